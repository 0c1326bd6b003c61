"""kubiasim: the code of kubia-sim, chapter 10's StatefulSet simulated on one machine.

`test/e2e/kubia-sim` is the command; it runs cli.main. The parts, from the command
line down:

    cli          the command line (only what kubectl cannot say), and the dispatch
                 under the cluster's lock
    commands     commands on the whole cluster: up, down, probe, dns
    rollout      the rolling update of a template that came through the API
    pod_commands commands on one node: node-down, node-up (and cut, heal: a pod's
                 node); for the API server: a pod forgotten (forced deletion), claims
                 deleted, pod_exec (exec in a pod)
    remotecommand  the API server's side of kubectl exec and attach (serve), and a
                 command run on a terminal or pipes for it (run_command)
    websocket    its WebSocket transport (channel subprotocols v5..v2, v4.base64)
    spdy         its SPDY/3.1 transport
    channels     what both transports share: channels, session, status, the close
    templates    the pod template, from the manifest and the command line
    podspec      the pod template's fields kubia-sim honours (and how), the refusal of
                 the others, a node's labels and nodeSelector, the init containers
    manifests    the reader of k8s/ (also used by the image suite's manifest tests)
    controller   the StatefulSet controller: OrderedReady or Parallel pod management,
                 ordinals.start, claim retention, pods no node takes left Pending,
                 revision history
    nodes        the nodes, the scheduler (spreading, cordon, nodeSelector) and the
                 node controller (NotReady after the grace, then NodeLost eviction)
    kubelet      the supervisor of one pod: stops, restarts, back-off, liveness and
                 readiness probes
    pod_init     a pod's init containers, run by its kubelet before its container
    containers   the command that starts a pod's container (a process, or podman)
    endpoints    which pods are ready, published to DNS and to the proxy, also by a
                 daemon of its own while no command runs; the StatefulSet's status
    cluster_dns  dnsmasq, answering as CoreDNS (or a DNS of the specification) does
    apiserver    the Kubernetes API server kubectl talks to (a daemon started by up):
                 HTTP, discovery, reads, watches, and the controller's thread
    apiobjects   the API's objects rendered from the state; apitables their tables
    apiwrites    the API's writes: create, patch, delete, scale, evictions, logs
    smp          strategic merge, merge and JSON patches
    apiseed      what up gives the API server: the manifest's objects, the version
    kubeconfig   the kubeconfig context up adds and down removes
    api_proxy    nginx on the API port: the pod and Service proxy paths, and the
                 front that sends the rest to the API server
    prometheus   Prometheus (up --prometheus), its targets following the pods
    pod_http     HTTP GETs to pods, and what counts as a passing probe
    network      the bridge and each pod's network namespace
    state        the cluster's state file, names and addresses
    processes    the processes started, named by PID and start time
    util         the error, output, running tools, files, waiting

Nothing about a cluster is kept in memory from one command to the next: each command,
each pod's kubelet, the endpoints daemon and the API server is a process of its own,
and the cluster is what its state file (state.py) and the pods' status files say.
"""
