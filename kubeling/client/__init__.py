"""Client machinery shared by every component: kubeconfig, REST client,
informers, listers and the work queue (client-go's role in upstream)."""
from kubeling.client.informer import Handlers, Informer, Lister, deep_copy, meta_key, split_key
from kubeling.client.kubeconfig import ClusterConfig, KubeconfigError
from kubeling.client.rest import ApiError, Client, retry_on_conflict
from kubeling.client.workqueue import ShutDown, WorkQueue

__all__ = ["ApiError", "Client", "ClusterConfig", "Handlers", "Informer", "KubeconfigError",
           "Lister", "ShutDown", "WorkQueue", "deep_copy", "meta_key", "retry_on_conflict", "split_key"]
