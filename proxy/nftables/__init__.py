"""The nftables proxy mode (upstream's pkg/proxy/nftables): rendering (rules),
the nft runner (runner) and the Proxier that ties them to Services and Endpoints (proxier)."""
