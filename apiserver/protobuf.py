"""Protobuf request bodies (``application/vnd.kubernetes.protobuf``), decoded into the JSON form.

kubectl's typed clients post their bodies as protobuf: ``kubectl create
namespace|configmap|secret|deployment|service|serviceaccount|job|cronjob|
role|clusterrole|rolebinding|clusterrolebinding|quota``, ``kubectl debug``'s
Pods, ``kubectl auth reconcile``'s RBAC objects, the auth reviews
(``auth can-i``, ``auth whoami``), ``create token`` and ``certificate
approve|deny``. The wire form, as k8s.io/apimachinery's
runtime/serializer/protobuf: the ``k8s\\x00`` magic, then a runtime.Unknown
(1 typeMeta{1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType)
whose raw bytes are the object in k8s.io/api's generated.proto layout.

The apiserver keeps one representation (JSON dicts), so this module turns
those bytes into exactly the dict a JSON client would have sent; the
request then takes the same create/update path (validation, defaulting,
admission). Answers stay JSON, which client-go reads by their Content-Type.

The schema tables below are ours, written from the field numbers of
k8s.io/api core/v1, apps/v1, batch/v1, rbac/v1, authentication/v1,
authorization/v1, certificates/v1 and apimachinery meta/v1 generated.proto.
For the object kinds (``SCHEMAS`` minus ``PARTIAL``) decoding is strict —
"lose nothing": a field number a table does not know is a 415 naming the
kind and the field, telling the client to send JSON, never silently
dropped; and Go's zero values (what gogo-protobuf always writes for
non-pointer fields) are left out as ``omitempty`` JSON would. The review and
CSR-approval tables (``PARTIAL``) hold only what their handlers read and
skip the rest, as before.
"""
from __future__ import annotations

import base64
import datetime

from apiserver import errors

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
MAX_DEPTH = 40

# A schema maps field number -> (JSON name, kind). Kinds:
#   "str" "int" "bool"      Go value fields: gogo writes them even when zero; zero is left out (omitempty)
#   "str?" "int?" "bool?"   Go pointer fields: on the wire only when set, so a zero is kept
#   "strs"                  repeated string
#   "ints"                  repeated int32/int64 (proto2: one varint each; packed also taken)
#   "bytes"                 raw bytes (the envelope's raw object)
#   "map"                   map<string, string>          (entries: repeated {1 key, 2 value})
#   "map:bytes"             map<string, bytes>           -> base64 strings, as JSON []byte
#   "map:quantity"          map<string, resource.Quantity{1 string}> -> "100m"
#   "quantity"              resource.Quantity -> string
#   "intstr" / "intstr?"    intstr.IntOrString{1 type 0=int 1=string, 2 intVal, 3 strVal} -> int or string
#   "time"                  metav1.Time{1 seconds, 2 nanos} -> RFC3339; the zero time is left out
#   {schema}                nested message (kept even when empty: Go's JSON writes "status": {})
#   [{schema}]              repeated message
#   ("inline", {schema})    a Go embedded struct: a nested message on the wire, its fields inline in JSON
TIME_FIELDS = {1: ("seconds", "int"), 2: ("nanos", "int")}  # metav1.Time as a dict (CSR approvals read it so)

# --- k8s.io/apimachinery meta/v1 ---
LABEL_SELECTOR = {
    1: ("matchLabels", "map"),
    2: ("matchExpressions", [{1: ("key", "str"), 2: ("operator", "str"), 3: ("values", "strs")}]),
}
OWNER_REFERENCE = {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
                   6: ("controller", "bool?"), 7: ("blockOwnerDeletion", "bool?")}
FIELDS_V1 = {1: ("Raw", "bytes")}
MANAGED_FIELDS_ENTRY = {1: ("manager", "str"), 2: ("operation", "str"), 3: ("apiVersion", "str"), 4: ("time", "time"),
                        6: ("fieldsType", "str"), 8: ("subresource", "str")}
OBJECT_META = {
    1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 4: ("selfLink", "str"),
    5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"), 8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "int?"), 11: ("labels", "map"),
    12: ("annotations", "map"), 13: ("ownerReferences", [OWNER_REFERENCE]), 14: ("finalizers", "strs"),
}
CONDITION = {1: ("type", "str"), 2: ("status", "str"), 3: ("observedGeneration", "int"),
             4: ("lastTransitionTime", "time"), 5: ("reason", "str"), 6: ("message", "str")}

# --- k8s.io/api core/v1 ---
LOCAL_OBJECT_REFERENCE = {1: ("name", "str")}
OBJECT_REFERENCE = {1: ("kind", "str"), 2: ("namespace", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                    5: ("apiVersion", "str"), 6: ("resourceVersion", "str"), 7: ("fieldPath", "str")}
OBJECT_FIELD_SELECTOR = {1: ("apiVersion", "str"), 2: ("fieldPath", "str")}
RESOURCE_FIELD_SELECTOR = {1: ("containerName", "str"), 2: ("resource", "str"), 3: ("divisor", "quantity")}
KEY_SELECTOR = {1: ("", ("inline", LOCAL_OBJECT_REFERENCE)), 2: ("key", "str"), 3: ("optional", "bool?")}
ENV_VAR = {1: ("name", "str"), 2: ("value", "str"), 3: ("valueFrom", {
    1: ("fieldRef", OBJECT_FIELD_SELECTOR), 2: ("resourceFieldRef", RESOURCE_FIELD_SELECTOR),
    3: ("configMapKeyRef", KEY_SELECTOR),
    4: ("secretKeyRef", KEY_SELECTOR)})}
ENV_FROM_SOURCE = {1: ("prefix", "str"),
                   2: ("configMapRef", {1: ("", ("inline", LOCAL_OBJECT_REFERENCE)), 2: ("optional", "bool?")}),
                   3: ("secretRef", {1: ("", ("inline", LOCAL_OBJECT_REFERENCE)), 2: ("optional", "bool?")})}
CONTAINER_PORT = {1: ("name", "str"), 2: ("hostPort", "int"), 3: ("containerPort", "int"), 4: ("protocol", "str"),
                  5: ("hostIP", "str")}
RESOURCE_REQUIREMENTS = {1: ("limits", "map:quantity"), 2: ("requests", "map:quantity"),
                         3: ("claims", [{1: ("name", "str"), 2: ("request", "str")}])}
VOLUME_MOUNT = {1: ("name", "str"), 2: ("readOnly", "bool"), 3: ("mountPath", "str"), 4: ("subPath", "str"),
                5: ("mountPropagation", "str?"), 6: ("subPathExpr", "str"), 7: ("recursiveReadOnly", "str?")}
HTTP_GET = {1: ("path", "str"), 2: ("port", "intstr"), 3: ("host", "str"), 4: ("scheme", "str"),
            5: ("httpHeaders", [{1: ("name", "str"), 2: ("value", "str")}])}
TCP_SOCKET = {1: ("port", "intstr"), 2: ("host", "str")}
EXEC_ACTION = {1: ("command", "strs")}
PROBE = {
    1: ("", ("inline", {1: ("exec", EXEC_ACTION), 2: ("httpGet", HTTP_GET), 3: ("tcpSocket", TCP_SOCKET),
                        4: ("grpc", {1: ("port", "int"), 2: ("service", "str?")})})),
    2: ("initialDelaySeconds", "int"), 3: ("timeoutSeconds", "int"), 4: ("periodSeconds", "int"),
    5: ("successThreshold", "int"), 6: ("failureThreshold", "int"), 7: ("terminationGracePeriodSeconds", "int?"),
}
LIFECYCLE_HANDLER = {1: ("exec", EXEC_ACTION), 2: ("httpGet", HTTP_GET), 3: ("tcpSocket", TCP_SOCKET),
                     4: ("sleep", {1: ("seconds", "int")})}
SE_LINUX_OPTIONS = {1: ("user", "str"), 2: ("role", "str"), 3: ("type", "str"), 4: ("level", "str")}
PROFILE = {1: ("type", "str"), 2: ("localhostProfile", "str?")}  # SeccompProfile, AppArmorProfile
SECURITY_CONTEXT = {
    1: ("capabilities", {1: ("add", "strs"), 2: ("drop", "strs")}), 2: ("privileged", "bool?"),
    3: ("seLinuxOptions", SE_LINUX_OPTIONS), 4: ("runAsUser", "int?"), 5: ("runAsNonRoot", "bool?"),
    6: ("readOnlyRootFilesystem", "bool?"), 7: ("allowPrivilegeEscalation", "bool?"), 8: ("runAsGroup", "int?"),
    9: ("procMount", "str?"), 11: ("seccompProfile", PROFILE), 12: ("appArmorProfile", PROFILE),
}
CONTAINER = {
    1: ("name", "str"), 2: ("image", "str"), 3: ("command", "strs"), 4: ("args", "strs"), 5: ("workingDir", "str"),
    6: ("ports", [CONTAINER_PORT]), 7: ("env", [ENV_VAR]), 8: ("resources", RESOURCE_REQUIREMENTS),
    9: ("volumeMounts", [VOLUME_MOUNT]), 13: ("terminationMessagePath", "str"), 14: ("imagePullPolicy", "str"),
    16: ("stdin", "bool"), 17: ("stdinOnce", "bool"), 18: ("tty", "bool"), 19: ("envFrom", [ENV_FROM_SOURCE]),
    10: ("livenessProbe", PROBE), 11: ("readinessProbe", PROBE),
    12: ("lifecycle", {1: ("postStart", LIFECYCLE_HANDLER), 2: ("preStop", LIFECYCLE_HANDLER)}),
    15: ("securityContext", SECURITY_CONTEXT), 20: ("terminationMessagePolicy", "str"), 22: ("startupProbe", PROBE),
    23: ("resizePolicy", [{1: ("resourceName", "str"), 2: ("restartPolicy", "str")}]), 24: ("restartPolicy", "str?"),
}
KEY_TO_PATH = {1: ("key", "str"), 2: ("path", "str"), 3: ("mode", "int?")}
DOWNWARD_API_FILE = {1: ("path", "str"), 2: ("fieldRef", OBJECT_FIELD_SELECTOR),
                     3: ("resourceFieldRef", RESOURCE_FIELD_SELECTOR), 4: ("mode", "int?")}
VOLUME_SOURCE = {  # the sources a one-node cluster can serve; others are a 415
    1: ("hostPath", {1: ("path", "str"), 2: ("type", "str?")}),
    2: ("emptyDir", {1: ("medium", "str"), 2: ("sizeLimit", "quantity")}),
    6: ("secret", {1: ("secretName", "str"), 2: ("items", [KEY_TO_PATH]), 3: ("defaultMode", "int?"),
                   4: ("optional", "bool?")}),
    10: ("persistentVolumeClaim", {1: ("claimName", "str"), 2: ("readOnly", "bool")}),
    16: ("downwardAPI", {1: ("items", [DOWNWARD_API_FILE]), 2: ("defaultMode", "int?")}),
    19: ("configMap", {1: ("", ("inline", LOCAL_OBJECT_REFERENCE)), 2: ("items", [KEY_TO_PATH]),
                       3: ("defaultMode", "int?"), 4: ("optional", "bool?")}),
    26: ("projected", {1: ("sources", [{
        1: ("secret", {1: ("", ("inline", LOCAL_OBJECT_REFERENCE)), 2: ("items", [KEY_TO_PATH]),
                       4: ("optional", "bool?")}),
        2: ("downwardAPI", {1: ("items", [DOWNWARD_API_FILE])}),
        3: ("configMap", {1: ("", ("inline", LOCAL_OBJECT_REFERENCE)), 2: ("items", [KEY_TO_PATH]),
                          4: ("optional", "bool?")}),
        4: ("serviceAccountToken", {1: ("audience", "str"), 2: ("expirationSeconds", "int?"), 3: ("path", "str")})}]),
        2: ("defaultMode", "int?")}),
}
NODE_SELECTOR_TERM = {1: ("matchExpressions", [{1: ("key", "str"), 2: ("operator", "str"), 3: ("values", "strs")}]),
                      2: ("matchFields", [{1: ("key", "str"), 2: ("operator", "str"), 3: ("values", "strs")}])}
POD_AFFINITY_TERM = {1: ("labelSelector", LABEL_SELECTOR), 2: ("namespaces", "strs"), 3: ("topologyKey", "str"),
                     4: ("namespaceSelector", LABEL_SELECTOR), 5: ("matchLabelKeys", "strs"),
                     6: ("mismatchLabelKeys", "strs")}
POD_AFFINITY = {1: ("requiredDuringSchedulingIgnoredDuringExecution", [POD_AFFINITY_TERM]),
                2: ("preferredDuringSchedulingIgnoredDuringExecution", [{1: ("weight", "int"),
                                                                         2: ("podAffinityTerm", POD_AFFINITY_TERM)}])}
AFFINITY = {
    1: ("nodeAffinity", {
        1: ("requiredDuringSchedulingIgnoredDuringExecution", {1: ("nodeSelectorTerms", [NODE_SELECTOR_TERM])}),
        2: ("preferredDuringSchedulingIgnoredDuringExecution", [{1: ("weight", "int"),
                                                                 2: ("preference", NODE_SELECTOR_TERM)}])}),
    2: ("podAffinity", POD_AFFINITY), 3: ("podAntiAffinity", POD_AFFINITY),
}
TOPOLOGY_SPREAD_CONSTRAINT = {
    1: ("maxSkew", "int"), 2: ("topologyKey", "str"), 3: ("whenUnsatisfiable", "str"), 4: ("labelSelector", LABEL_SELECTOR),
    5: ("minDomains", "int?"), 6: ("nodeAffinityPolicy", "str?"), 7: ("nodeTaintsPolicy", "str?"),
    8: ("matchLabelKeys", "strs"),
}
POD_SECURITY_CONTEXT = {
    1: ("seLinuxOptions", SE_LINUX_OPTIONS), 2: ("runAsUser", "int?"), 3: ("runAsNonRoot", "bool?"),
    4: ("supplementalGroups", "ints"), 5: ("fsGroup", "int?"), 6: ("runAsGroup", "int?"),
    7: ("sysctls", [{1: ("name", "str"), 2: ("value", "str")}]), 9: ("fsGroupChangePolicy", "str?"),
    10: ("seccompProfile", PROFILE), 11: ("appArmorProfile", PROFILE),
    12: ("supplementalGroupsPolicy", "str?"), 13: ("seLinuxChangePolicy", "str?"),
}
POD_SPEC = {
    1: ("volumes", [{1: ("name", "str"), 2: ("", ("inline", VOLUME_SOURCE))}]), 2: ("containers", [CONTAINER]), 3: ("restartPolicy", "str"), 4: ("terminationGracePeriodSeconds", "int?"),
    5: ("activeDeadlineSeconds", "int?"), 6: ("dnsPolicy", "str"), 7: ("nodeSelector", "map"),
    8: ("serviceAccountName", "str"), 9: ("serviceAccount", "str"), 10: ("nodeName", "str"),
    11: ("hostNetwork", "bool"), 12: ("hostPID", "bool"), 13: ("hostIPC", "bool"),
    14: ("securityContext", POD_SECURITY_CONTEXT), 15: ("imagePullSecrets", [LOCAL_OBJECT_REFERENCE]),
    16: ("hostname", "str"), 17: ("subdomain", "str"), 18: ("affinity", AFFINITY), 19: ("schedulerName", "str"),
    20: ("initContainers", [CONTAINER]),
    21: ("automountServiceAccountToken", "bool?"),
    22: ("tolerations", [{1: ("key", "str"), 2: ("operator", "str"), 3: ("value", "str"), 4: ("effect", "str"),
                          5: ("tolerationSeconds", "int?")}]),
    23: ("hostAliases", [{1: ("ip", "str"), 2: ("hostnames", "strs")}]),
    24: ("priorityClassName", "str"), 25: ("priority", "int?"),
    26: ("dnsConfig", {1: ("nameservers", "strs"), 2: ("searches", "strs"),
                       3: ("options", [{1: ("name", "str"), 2: ("value", "str?")}])}),
    27: ("shareProcessNamespace", "bool?"), 28: ("readinessGates", [{1: ("conditionType", "str")}]),
    29: ("runtimeClassName", "str?"), 30: ("enableServiceLinks", "bool?"), 31: ("preemptionPolicy", "str?"),
    33: ("topologySpreadConstraints", [TOPOLOGY_SPREAD_CONSTRAINT]), 35: ("setHostnameAsFQDN", "bool?"),
    36: ("os", {1: ("name", "str")}), 37: ("hostUsers", "bool?"), 38: ("schedulingGates", [{1: ("name", "str")}]),
}
POD_STATUS = {  # what a new Pod carries (kubectl debug): the scalars gogo always writes, IPs, conditions
    1: ("phase", "str"), 2: ("conditions", [{1: ("type", "str"), 2: ("status", "str"), 3: ("lastProbeTime", "time"),
                                            4: ("lastTransitionTime", "time"), 5: ("reason", "str"),
                                            6: ("message", "str")}]),
    3: ("message", "str"), 4: ("reason", "str"), 5: ("hostIP", "str"), 6: ("podIP", "str"), 7: ("startTime", "time"),
    9: ("qosClass", "str"), 11: ("nominatedNodeName", "str"), 12: ("podIPs", [{1: ("ip", "str")}]),
    14: ("resize", "str"), 16: ("hostIPs", [{1: ("ip", "str")}]), 17: ("observedGeneration", "int"),
}
POD_TEMPLATE_SPEC = {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)}
SERVICE_PORT = {1: ("name", "str"), 2: ("protocol", "str"), 3: ("port", "int"), 4: ("targetPort", "intstr"),
                5: ("nodePort", "int"), 6: ("appProtocol", "str?")}
SERVICE_SPEC = {
    1: ("ports", [SERVICE_PORT]), 2: ("selector", "map"), 3: ("clusterIP", "str"), 4: ("type", "str"),
    5: ("externalIPs", "strs"), 7: ("sessionAffinity", "str"), 8: ("loadBalancerIP", "str"),
    9: ("loadBalancerSourceRanges", "strs"), 10: ("externalName", "str"), 11: ("externalTrafficPolicy", "str"),
    12: ("healthCheckNodePort", "int"), 13: ("publishNotReadyAddresses", "bool"),
    14: ("sessionAffinityConfig", {1: ("clientIP", {1: ("timeoutSeconds", "int?")})}),
    17: ("ipFamilyPolicy", "str?"), 18: ("clusterIPs", "strs"), 19: ("ipFamilies", "strs"),
    20: ("allocateLoadBalancerNodePorts", "bool?"), 21: ("loadBalancerClass", "str?"),
    22: ("internalTrafficPolicy", "str?"), 23: ("trafficDistribution", "str?"),
}
SERVICE_STATUS = {1: ("loadBalancer", {1: ("ingress", [{1: ("ip", "str"), 2: ("hostname", "str")}])}),
                  2: ("conditions", [CONDITION])}
RESOURCE_QUOTA_SPEC = {1: ("hard", "map:quantity"), 2: ("scopes", "strs"), 3: ("scopeSelector", {
    1: ("matchExpressions", [{1: ("scopeName", "str"), 2: ("operator", "str"), 3: ("values", "strs")}])})}
NAMESPACE_STATUS = {1: ("phase", "str"), 2: ("conditions", [{
    1: ("type", "str"), 2: ("status", "str"), 4: ("lastTransitionTime", "time"), 5: ("reason", "str"),
    6: ("message", "str")}])}

# --- k8s.io/api apps/v1, batch/v1 ---
DEPLOYMENT_SPEC = {
    1: ("replicas", "int?"), 2: ("selector", LABEL_SELECTOR), 3: ("template", POD_TEMPLATE_SPEC),
    4: ("strategy", {1: ("type", "str"), 2: ("rollingUpdate", {1: ("maxUnavailable", "intstr?"),
                                                              2: ("maxSurge", "intstr?")})}),
    5: ("minReadySeconds", "int"), 6: ("revisionHistoryLimit", "int?"), 7: ("paused", "bool"),
    9: ("progressDeadlineSeconds", "int?"),
}
DEPLOYMENT_STATUS = {
    1: ("observedGeneration", "int"), 2: ("replicas", "int"), 3: ("updatedReplicas", "int"),
    4: ("availableReplicas", "int"), 5: ("unavailableReplicas", "int"),
    6: ("conditions", [{1: ("type", "str"), 2: ("status", "str"), 4: ("reason", "str"), 5: ("message", "str"),
                        6: ("lastUpdateTime", "time"), 7: ("lastTransitionTime", "time")}]),
    7: ("readyReplicas", "int"), 8: ("collisionCount", "int?"), 9: ("terminatingReplicas", "int?"),
}
JOB_SPEC = {
    1: ("parallelism", "int?"), 2: ("completions", "int?"), 3: ("activeDeadlineSeconds", "int?"),
    4: ("selector", LABEL_SELECTOR), 5: ("manualSelector", "bool?"), 6: ("template", POD_TEMPLATE_SPEC),
    7: ("backoffLimit", "int?"), 8: ("ttlSecondsAfterFinished", "int?"), 9: ("completionMode", "str?"),
    10: ("suspend", "bool?"), 12: ("backoffLimitPerIndex", "int?"), 13: ("maxFailedIndexes", "int?"),
    14: ("podReplacementPolicy", "str?"), 15: ("managedBy", "str?"),
}
JOB_STATUS = {
    1: ("conditions", [{1: ("type", "str"), 2: ("status", "str"), 3: ("lastProbeTime", "time"),
                        4: ("lastTransitionTime", "time"), 5: ("reason", "str"), 6: ("message", "str")}]),
    2: ("startTime", "time"), 3: ("completionTime", "time"), 4: ("active", "int"), 5: ("succeeded", "int"),
    6: ("failed", "int"), 7: ("completedIndexes", "str"), 8: ("uncountedTerminatedPods", {
        1: ("succeeded", "strs"), 2: ("failed", "strs")}),
    9: ("ready", "int?"), 10: ("failedIndexes", "str?"), 11: ("terminating", "int?"),
}
JOB_TEMPLATE_SPEC = {1: ("metadata", OBJECT_META), 2: ("spec", JOB_SPEC)}
CRON_JOB_SPEC = {
    1: ("schedule", "str"), 2: ("startingDeadlineSeconds", "int?"), 3: ("concurrencyPolicy", "str"),
    4: ("suspend", "bool?"), 5: ("jobTemplate", JOB_TEMPLATE_SPEC), 6: ("successfulJobsHistoryLimit", "int?"),
    7: ("failedJobsHistoryLimit", "int?"), 8: ("timeZone", "str?"),
}
CRON_JOB_STATUS = {1: ("active", [OBJECT_REFERENCE]), 4: ("lastScheduleTime", "time"),
                   5: ("lastSuccessfulTime", "time")}

# --- k8s.io/api rbac/v1 ---
POLICY_RULE = {1: ("verbs", "strs"), 2: ("apiGroups", "strs"), 3: ("resources", "strs"),
               4: ("resourceNames", "strs"), 5: ("nonResourceURLs", "strs")}
SUBJECT = {1: ("kind", "str"), 2: ("apiGroup", "str"), 3: ("name", "str"), 4: ("namespace", "str")}
ROLE_REF = {1: ("apiGroup", "str"), 2: ("kind", "str"), 3: ("name", "str")}

SCHEMAS: dict[str, dict] = {
    "Namespace": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", "strs")}),
                  3: ("status", NAMESPACE_STATUS)},
    "ConfigMap": {1: ("metadata", OBJECT_META), 2: ("data", "map"), 3: ("binaryData", "map:bytes"),
                  4: ("immutable", "bool?")},
    "Secret": {1: ("metadata", OBJECT_META), 2: ("data", "map:bytes"), 3: ("type", "str"), 4: ("stringData", "map"),
               5: ("immutable", "bool?")},
    "ServiceAccount": {1: ("metadata", OBJECT_META), 2: ("secrets", [OBJECT_REFERENCE]),
                       3: ("imagePullSecrets", [LOCAL_OBJECT_REFERENCE]),
                       4: ("automountServiceAccountToken", "bool?")},
    "Service": {1: ("metadata", OBJECT_META), 2: ("spec", SERVICE_SPEC), 3: ("status", SERVICE_STATUS)},
    "ResourceQuota": {1: ("metadata", OBJECT_META), 2: ("spec", RESOURCE_QUOTA_SPEC),
                      3: ("status", {1: ("hard", "map:quantity"), 2: ("used", "map:quantity")})},
    "Pod": {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC), 3: ("status", POD_STATUS)},
    "Deployment": {1: ("metadata", OBJECT_META), 2: ("spec", DEPLOYMENT_SPEC), 3: ("status", DEPLOYMENT_STATUS)},
    "Job": {1: ("metadata", OBJECT_META), 2: ("spec", JOB_SPEC), 3: ("status", JOB_STATUS)},
    "CronJob": {1: ("metadata", OBJECT_META), 2: ("spec", CRON_JOB_SPEC), 3: ("status", CRON_JOB_STATUS)},
    "Role": {1: ("metadata", OBJECT_META), 2: ("rules", [POLICY_RULE])},
    "ClusterRole": {1: ("metadata", OBJECT_META), 2: ("rules", [POLICY_RULE]),
                    3: ("aggregationRule", {1: ("clusterRoleSelectors", [LABEL_SELECTOR])})},
    "RoleBinding": {1: ("metadata", OBJECT_META), 2: ("subjects", [SUBJECT]), 3: ("roleRef", ROLE_REF)},
}
SCHEMAS["ClusterRoleBinding"] = SCHEMAS["RoleBinding"]
# scheduling/v1: value has no omitempty in Go's JSON, so its zero is kept ("int?")
SCHEMAS["PriorityClass"] = {1: ("metadata", OBJECT_META), 2: ("value", "int?"), 3: ("globalDefault", "bool"),
                            4: ("description", "str"), 5: ("preemptionPolicy", "str?")}

# The reviews, TokenRequest and CSR approvals: only what their handlers read (authentication/v1,
# authorization/v1, certificates/v1 generated.proto); other fields are skipped and zero values kept.
REVIEW_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str")}
RESOURCE_ATTRIBUTES = {1: ("namespace", "str"), 2: ("verb", "str"), 3: ("group", "str"), 4: ("version", "str"),
                       5: ("resource", "str"), 6: ("subresource", "str"), 7: ("name", "str")}
NON_RESOURCE_ATTRIBUTES = {1: ("path", "str"), 2: ("verb", "str")}
BOUND_OBJECT_REFERENCE = {1: ("kind", "str"), 2: ("apiVersion", "str"), 3: ("name", "str"), 4: ("uid", "str")}
SUBJECT_ACCESS_REVIEW = {1: ("metadata", REVIEW_META), 2: ("spec", {
    1: ("resourceAttributes", RESOURCE_ATTRIBUTES), 2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
    3: ("user", "str"), 4: ("groups", "strs"), 6: ("uid", "str")})}
PARTIAL_SCHEMAS: dict[str, dict] = {
    "SelfSubjectAccessReview": {1: ("metadata", REVIEW_META), 2: ("spec", {
        1: ("resourceAttributes", RESOURCE_ATTRIBUTES), 2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES)})},
    "SelfSubjectRulesReview": {1: ("metadata", REVIEW_META), 2: ("spec", {1: ("namespace", "str")})},
    "SubjectAccessReview": SUBJECT_ACCESS_REVIEW,
    "LocalSubjectAccessReview": SUBJECT_ACCESS_REVIEW,
    "SelfSubjectReview": {1: ("metadata", REVIEW_META)},
    "TokenReview": {1: ("metadata", REVIEW_META), 2: ("spec", {1: ("token", "str"), 2: ("audiences", "strs")})},
    "TokenRequest": {1: ("metadata", REVIEW_META), 2: ("spec", {
        1: ("audiences", "strs"), 3: ("boundObjectRef", BOUND_OBJECT_REFERENCE), 4: ("expirationSeconds", "int")})},
    # kubectl certificate approve|deny PUT the whole CSR to /approval; only the name, resourceVersion and
    # the conditions count there (times stay {seconds, nanos} dicts: certificates.read_body formats them).
    "CertificateSigningRequest": {
        1: ("metadata", {1: ("name", "str"), 6: ("resourceVersion", "str")}),
        3: ("status", {1: ("conditions", [{1: ("type", "str"), 2: ("reason", "str"), 3: ("message", "str"),
                                           4: ("lastUpdateTime", TIME_FIELDS), 5: ("lastTransitionTime", TIME_FIELDS),
                                           6: ("status", "str")}])})},
}
PARTIAL = frozenset(PARTIAL_SCHEMAS)
UNKNOWN = {1: ("typeMeta", {1: ("apiVersion", "str"), 2: ("kind", "str")}), 2: ("raw", "bytes"),
           3: ("contentEncoding", "str"), 4: ("contentType", "str")}

_WIRE = {"str": 2, "int": 0, "bool": 0, "strs": 2, "bytes": 2}  # anything else is a length-delimited message


class _Malformed(Exception):
    pass


class _UnknownField(Exception):
    def __init__(self, path: str, num: int):
        super().__init__(path, num)
        self.path, self.num = path, num


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _signed(value: int) -> int:
    # int32 and int64 are both written as 64-bit two's complement varints (negative int32 sign-extended).
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: bytes, path: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _Malformed(f"invalid UTF-8 in the string field {path}") from None


def _fields(data: bytes):
    """(number, wire type, value) of each field of one message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise _Malformed("truncated field")
            value, i = data[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if i + n > len(data):
                raise _Malformed("truncated field")
            value, i = data[i:i + n], i + n
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        yield num, wire, value


def _map_entry(data: bytes, kind: str, path: str) -> tuple[str, object]:
    key, value = "", b""
    for num, wire, raw in _fields(data):
        if num == 1 and wire == 2:
            key = _text(raw, path)
        elif num == 2 and wire == 2:
            value = raw
        else:
            raise _UnknownField(path, num)
    if kind == "map":
        return key, _text(value, f"{path}[{key}]")
    if kind == "map:bytes":
        return key, base64.b64encode(value).decode()
    return key, _quantity(value, f"{path}[{key}]")


def _quantity(data: bytes, path: str) -> str:
    out = _message(data, {1: ("string", "str")}, True, path, 0, omit_zero=False)
    return out.get("string") or "0"


def _int_or_string(data: bytes, path: str):
    out = _message(data, {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "str")}, True, path, 0,
                   omit_zero=False)
    return out.get("strVal", "") if out.get("type") == 1 else out.get("intVal", 0)


def _time(data: bytes, path: str) -> str | None:
    out = _message(data, TIME_FIELDS, True, path, 0, omit_zero=False)
    seconds = out.get("seconds", 0)
    if not seconds and not out.get("nanos"):
        return None  # the zero time: Go's JSON writes null, kubectl's creationTimestamp
    try:
        when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _Malformed(f"time out of range at {path}") from None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(data: bytes, schema: dict, strict: bool, path: str, depth: int, *, omit_zero: bool) -> dict:
    """The JSON dict of one message. ``strict``: an unknown field number raises _UnknownField."""
    if depth > MAX_DEPTH:
        raise _Malformed("nesting too deep")
    out: dict = {}
    for num, wire, value in _fields(data):
        field = schema.get(num)
        if field is None:
            if strict:
                raise _UnknownField(path, num)
            continue
        name, kind = field
        where = f"{path}.{name}" if path and name else (name or path)
        want = _WIRE.get(kind, 2) if isinstance(kind, str) else 2
        if kind in ("int?", "bool?"):
            want = 0
        if kind == "ints":
            items = out.setdefault(name, [])
            if wire == 0:
                items.append(_signed(value))
                continue
            if wire == 2:
                j = 0
                while j < len(value):
                    v, j = _varint(value, j)
                    items.append(_signed(v))
                continue
        if wire != want:
            if strict:
                raise _Malformed(f"field {where} has wire type {wire}, expected {want}")
            continue
        if kind in ("int", "int?"):
            v = _signed(value)
        elif kind in ("bool", "bool?"):
            v = bool(value)
        elif kind in ("str", "str?"):
            v = _text(value, where)
        elif kind == "strs":
            out.setdefault(name, []).append(_text(value, where))
            continue
        elif kind == "bytes":
            v = value
        elif kind in ("map", "map:bytes", "map:quantity"):
            k, mv = _map_entry(value, kind, where)
            out.setdefault(name, {})[k] = mv
            continue
        elif kind == "quantity":
            v = _quantity(value, where)
        elif kind in ("intstr", "intstr?"):
            v = _int_or_string(value, where)
            if kind == "intstr" and omit_zero and v in (0, ""):
                out.pop(name, None)
                continue
        elif kind == "time":
            v = _time(value, where)
            if v is None:
                out.pop(name, None)
                continue
        elif isinstance(kind, dict):
            v = {**out.get(name, {}), **_message(value, kind, strict, where, depth + 1, omit_zero=omit_zero)}
        elif isinstance(kind, list):
            items = out.setdefault(name, [])
            items.append(_message(value, kind[0], strict, f"{where}[{len(items)}]", depth + 1, omit_zero=omit_zero))
            continue
        elif isinstance(kind, tuple) and kind[0] == "inline":
            out.update(_message(value, kind[1], strict, path, depth + 1, omit_zero=omit_zero))
            continue
        else:  # a schema table error, not the client's
            raise TypeError(f"unknown schema kind {kind!r}")
        if omit_zero and kind in ("str", "int", "bool") and not v:
            out.pop(name, None)  # Go's zero value of a non-pointer field: absent, as omitempty JSON
            continue
        out[name] = v
    return out


def unknown_field(kind: str, path: str, num: int) -> errors.StatusError:
    """415 UnsupportedMediaType for a field this server's protobuf tables do not know (never dropped)."""
    where = f"field number {num} of {path}" if path else f"field number {num}"
    return errors.StatusError(415, "UnsupportedMediaType",
                              f"the protobuf {kind} body has {where}, which this server does not decode; "
                              f"send the object as JSON (application/json) instead")


def decode(raw: bytes, kind: str | None = None) -> dict:
    """The JSON form (dict) of a protobuf body.

    ``kind``: the kind the endpoint expects (a review, TokenRequest, CSR approval), or None to take the
    envelope's kind (create/update of the object kinds in SCHEMAS). Raises errors.StatusError: 400
    BadRequest for bytes that are not a protobuf object (or the wrong kind); 415 UnsupportedMediaType for
    a kind without a table or a field number the table does not know, asking for JSON.
    """
    try:
        if not raw.startswith(MAGIC):
            raise _Malformed("missing the k8s protobuf magic prefix")
        unknown = _message(raw[len(MAGIC):], UNKNOWN, False, "", 0, omit_zero=False)
        tm = unknown.get("typeMeta") or {}
        got = tm.get("kind") or ""
        if kind is not None and got not in ("", kind):
            raise _Malformed(f"expected a {kind}, got {got!r}")
        want = kind or got
        if unknown.get("contentEncoding"):
            raise errors.StatusError(415, "UnsupportedMediaType",
                                     f"protobuf bodies with content encoding {unknown['contentEncoding']!r} are not "
                                     f"supported; send the object as JSON (application/json) instead")
        if want in PARTIAL_SCHEMAS:
            obj = _message(unknown.get("raw", b""), PARTIAL_SCHEMAS[want], False, "", 0, omit_zero=False)
            obj.setdefault("spec", {})
        elif want in SCHEMAS:
            try:
                obj = _message(unknown.get("raw", b""), SCHEMAS[want], True, "", 0, omit_zero=True)
            except _UnknownField as e:
                raise unknown_field(want, e.path, e.num) from None
        elif not want:
            raise _Malformed("the envelope names no kind")
        else:
            raise errors.StatusError(415, "UnsupportedMediaType",
                                     f"this server does not decode protobuf {want} bodies; "
                                     f"send the object as JSON (application/json) instead")
    except _Malformed as e:
        raise errors.bad_request(f"unable to decode a protobuf {kind or 'object'}: {e}") from None
    except _UnknownField as e:  # a map entry or envelope of a partial table
        raise errors.bad_request(f"unable to decode a protobuf {kind or 'object'}: unexpected field {e.num}"
                                 f" at {e.path or 'the top level'}") from None
    return {"kind": want, "apiVersion": tm.get("apiVersion", ""), **obj}
