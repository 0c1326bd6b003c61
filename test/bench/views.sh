# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The cluster view part of bench.sh (sourced; uses its settings and helpers).
#
# One set of kubia peers, kubia-1 .. kubia-(N-1) for the largest N measured, each on its
# own loopback address (127.0.X.Y) and port, serves GET /data. Each cluster size has its
# own pod kubia-0 (the pod wrk asks) and its own DNS server, whose SRV records list that
# kubia-0 and the first peers: kubia-0 of the 30-pod cluster sees 30 pods. The 3-pod
# cluster also has a kubia-0 without SRV cache (--dns-cache-ms 0, which looks up per
# request as the reference does), and the reference runs three pods on 127.0.0.1/.2/.3
# with one port (the original ignores the SRV port) and a dnsmasq of its own.

peer_addr() { # peer_addr I: the loopback address of pod I
	echo "127.0.$(($1 / 250)).$(($1 % 250 + 1))"
}

# cluster_dns NAME PORT PODS POD0_PORT: a DNS server for a cluster of PODS pods on PORT;
# LAST_PID is its PID. Pod i > 0 is the shared peer i.
cluster_dns() {
	local name=$1 port=$2 pods=$3 pod0=$4 i target records=() conf=$TMP/$1.conf
	: >"$conf"
	for ((i = 0; i < pods; i++)); do
		target=kubia-$i.kubia.default.svc.cluster.local
		local p=$pod0
		((i == 0)) || p=${PEER_PORT[$i]}
		records+=("$target,$p,$(peer_addr "$i")")
		printf 'srv-host=%s,%s,%s,0,0\nhost-record=%s,%s\n' "$SERVICE" "$target" "$p" \
			"$target" "$(peer_addr "$i")" >>"$conf"
	done
	if ((pods > DNSMASQ_MAX_PODS)); then
		start "$name" "$PYTHON" "$SCRIPT_DIR/srvdns.py" "$port" "$DNS_TTL" "$SERVICE" \
			"${records[@]}"
	else
		dnsmasq_conf "$name" "$port" "$conf"
	fi
}

# dnsmasq_conf NAME PORT CONF: dnsmasq on 127.0.0.1:PORT with the records of CONF.
dnsmasq_conf() {
	start "$1" "$DNSMASQ" -k --conf-file="$3" --no-resolv --no-hosts --bind-interfaces \
		--listen-address=127.0.0.1 --port="$2" --pid-file= --user="$(id -un)" \
		--local=/cluster.local/ --local=// --local-ttl="$DNS_TTL" --log-facility=-
}

# kubia_pod NAME HOSTNAME PORT DNS_PORT DATA [EXTRA...]: a kubia in peers mode holding DATA.
kubia_pod() {
	local name=$1 host=$2 port=$3 dns=$4
	mkdir -p "$VOL/$name"
	printf '%s' "$5" >"$VOL/$name/kubia.txt"
	shift 5
	start "$name" "$KUBIA" --port "$port" --data-file "$VOL/$name/kubia.txt" --mode peers \
		--hostname "$host" --service "$SERVICE." --dns-server "127.0.0.1:$dns" \
		--resolv-conf "$TMP/resolv.conf" --threads "$THREADS" --log-level warn "$@"
}

section_views() {
	local sizes=(3 "${VIEW_PODS[@]}") max=3 n i k
	for n in "${VIEW_PODS[@]}"; do
		((n <= max)) || max=$n
	done
	log "cluster view: wrk -t$WRK_THREADS -c$CLUSTER_CONNS -d${SECS}s; $CLUSTER_ROUNDS rounds;" \
		"${sizes[*]} pods"
	# Ports: peers 1..max-1, then per size its kubia-0 and DNS, then the extra ones.
	free_ports $((max - 1 + 2 * ${#sizes[@]} + 3))
	local all=("${PORTS[@]}")
	PEER_PORT=(0 "${all[@]:0:max-1}")
	k=$((max - 1))
	local -A pod0_port=() dns_port=() pod0_pid=() url=() rss=() size=()
	for n in "${sizes[@]}"; do
		pod0_port[$n]=${all[$k]}
		dns_port[$n]=${all[$((k + 1))]}
		k=$((k + 2))
	done
	local nocache_port=${all[$k]} node_port=${all[$((k + 1))]} dns_node_port=${all[$((k + 2))]}

	local cluster_pids=() ready=()
	for n in "${sizes[@]}"; do
		cluster_dns "dns-$n" "${dns_port[$n]}" "$n" "${pod0_port[$n]}"
		cluster_pids+=("$LAST_PID")
	done
	: >"$TMP/dns-node.conf"
	for i in 0 1 2; do
		printf 'srv-host=%s,kubia-%d.kubia.default.svc.cluster.local,%s,0,0\n' "$SERVICE" \
			"$i" "$node_port" >>"$TMP/dns-node.conf"
		printf 'host-record=kubia-%d.kubia.default.svc.cluster.local,127.0.0.%d\n' "$i" \
			$((i + 1)) >>"$TMP/dns-node.conf"
	done
	dnsmasq_conf dns-node "$dns_node_port" "$TMP/dns-node.conf"
	cluster_pids+=("$LAST_PID")

	for ((i = 1; i < max; i++)); do
		kubia_pod "kubia-$i" "kubia-$i" "${PEER_PORT[$i]}" "${dns_port[$max]}" "data of pod $i"
		cluster_pids+=("$LAST_PID")
		ready+=("$LAST_PID" "http://127.0.0.1:${PEER_PORT[$i]}/readyz")
	done
	for n in "${sizes[@]}"; do
		local peers=256
		((n <= peers)) || peers=$n
		kubia_pod "kubia-0-of-$n" kubia-0 "${pod0_port[$n]}" "${dns_port[$n]}" \
			"data of pod 0" --max-peers "$peers"
		pod0_pid[$n]=$LAST_PID
		url[view-$n/kubia]="http://127.0.0.1:${pod0_port[$n]}/"
		rss[view-$n/kubia]=$LAST_PID
	done
	kubia_pod kubia-0-nocache kubia-0 "$nocache_port" "${dns_port[3]}" "data of pod 0" \
		--dns-cache-ms 0
	url[view-3/kubia-nocache]="http://127.0.0.1:$nocache_port/"
	rss[view-3/kubia-nocache]=$LAST_PID
	cluster_pids+=("${pod0_pid[@]}" "$LAST_PID")
	ready+=("$LAST_PID" "${url[view-3/kubia-nocache]}readyz")
	for n in "${sizes[@]}"; do
		ready+=("${pod0_pid[$n]}" "${url[view-$n/kubia]}readyz")
	done
	for i in 0 1 2; do
		printf 'data of pod %d' "$i" >"$VOL/node-$i.txt"
		start "node-$i" env KUBIA_REF_PORT="$node_port" KUBIA_REF_HOST="127.0.0.$((i + 1))" \
			KUBIA_REF_DATA_FILE="$VOL/node-$i.txt" KUBIA_REF_HOSTNAME="kubia-$i" \
			KUBIA_REF_DNS_SERVER="127.0.0.1:$dns_node_port" node "$REFERENCE_JS"
		cluster_pids+=("$LAST_PID")
		ready+=("$LAST_PID" "http://127.0.0.$((i + 1)):$node_port/data")
		((i > 0)) || rss[view-3/node]=$LAST_PID
	done
	url[view-3/node]="http://127.0.0.1:$node_port/"
	wait_ready "$CLUSTER_DEADLINE" "${ready[@]}"
	check_alive "${cluster_pids[@]}"

	local contenders=(view-3/kubia view-3/kubia-nocache view-3/node) c
	for n in "${VIEW_PODS[@]}"; do
		contenders+=("view-$n/kubia")
	done
	check_views
	for c in "${contenders[@]}"; do
		size[$c]=$("${BENCHCTL[@]}" response-size "${url[$c]}") || die "GET ${url[$c]} failed"
	done
	if ((WARMUP_SECS > 0)); then
		for c in "${contenders[@]}"; do
			run_wrk warmup "${c#*/}" "$CLUSTER_CONNS" "${url[$c]}" 0 "${size[$c]}" "" \
				"${cluster_pids[@]}"
		done
	fi
	local r nc=${#contenders[@]}
	for ((r = 0; r < CLUSTER_ROUNDS; r++)); do
		log "cluster view round $((r + 1))/$CLUSTER_ROUNDS"
		for ((i = 0; i < nc; i++)); do
			c=${contenders[$(((r + i) % nc))]}
			run_wrk "${c%/*}" "${c#*/}" "$CLUSTER_CONNS" "${url[$c]}" 0 "${size[$c]}" \
				"${rss[$c]}" "${cluster_pids[@]}"
		done
	done
	check_views # still the right answers after the load
	stop "${cluster_pids[@]}"
}

# check_views: every contender gives the book's answer (the reference in any order).
# Uses section_views' url array (bash's dynamic scope).
check_views() {
	local c n
	for c in "${contenders[@]}"; do
		n=${c%/*}
		n=${n#view-}
		if [[ $c == */node ]]; then
			"${BENCHCTL[@]}" check-view "${url[$c]}" "$n" --any-order
		else
			"${BENCHCTL[@]}" check-view "${url[$c]}" "$n"
		fi || die "wrong cluster view from $c"
	done
}
