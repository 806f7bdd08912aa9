"""The cluster's web dashboard (issue 9's "Dashboard: UI for clusters").

Mirrors kubernetes/dashboard: a process of its own that serves a single-page
app and an API the page calls; every apiserver call is made on the user's
behalf with the bearer token the browser presents (the login page's token),
so the apiserver's own authentication and authorization decide what the user
sees. ``--enable-skip-login`` lets a browser without a token use the
dashboard's own ``--kubeconfig`` identity, as upstream's flag of that name.

Pieces: ``server`` (the HTTP app: static files, login, the apiserver proxy,
the live stream of watch events) and ``static/`` (index.html, app.js,
app.css: no build step, nothing fetched from outside the cluster).
"""
