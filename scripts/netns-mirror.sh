#!/bin/bash
# A SPAN-like lab for live capture, in network namespaces only:
#
#   ${P}a (caller, 10.N.0.1) ==${P}A====${P}B== ${P}b (callee, 10.N.0.2)
#        |  tc mirred: every frame in and out of ${P}A is copied to ${P}M
#        ${P}M ======== ${P}S  in ${P}s (the sensor's mirror port, no address)
#
# usage: netns-mirror.sh up PREFIX [N]    (PREFIX: up to 8 chars; N: 0-255)
#        netns-mirror.sh down PREFIX
# Run voxtap (and tcpdump) with `ip netns exec ${P}s ... ${P}S`.
# `down` removes everything `up` created and is safe to run twice.
set -euo pipefail
cmd=${1:?usage: netns-mirror.sh up|down PREFIX [N]}
P=${2:?prefix}
N=${3:-201}
if [ ${#P} -gt 8 ]; then echo "prefix too long (interface names: 15 chars)" >&2; exit 2; fi

down() {
    for ns in "${P}a" "${P}b" "${P}s"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

case "$cmd" in
down)
    down
    ;;
up)
    down
    trap 'down' ERR
    for ns in a b s; do
        ip netns add "${P}$ns"
        ip -n "${P}$ns" link set lo up
        # No IPv6: no router solicitations or MLD in the counted traffic.
        ip netns exec "${P}$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip netns exec "${P}$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    done
    ip link add "${P}A" netns "${P}a" type veth peer name "${P}B" netns "${P}b"
    ip link add "${P}M" netns "${P}a" type veth peer name "${P}S" netns "${P}s"
    ip -n "${P}a" addr add "10.$N.0.1/24" dev "${P}A"
    ip -n "${P}b" addr add "10.$N.0.2/24" dev "${P}B"
    for l in "a ${P}A" "a ${P}M" "b ${P}B" "s ${P}S"; do
        set -- $l
        ip -n "${P}$1" link set "$2" up
    done
    # veth leaves UDP/TCP checksums unfinished unless tx offload is off.
    ip netns exec "${P}a" ethtool -K "${P}A" tx off >/dev/null
    ip netns exec "${P}b" ethtool -K "${P}B" tx off >/dev/null
    # Static neighbours: no ARP in the middle of the counted traffic.
    macA=$(ip netns exec "${P}a" cat "/sys/class/net/${P}A/address")
    macB=$(ip netns exec "${P}b" cat "/sys/class/net/${P}B/address")
    ip -n "${P}a" neigh replace "10.$N.0.2" lladdr "$macB" dev "${P}A" nud permanent
    ip -n "${P}b" neigh replace "10.$N.0.1" lladdr "$macA" dev "${P}B" nud permanent
    # The SPAN: copy both directions of the caller's link to the mirror port.
    # (u32 matching everything: this kernel has no matchall classifier.)
    ip netns exec "${P}a" tc qdisc add dev "${P}A" clsact
    for dir in ingress egress; do
        ip netns exec "${P}a" tc filter add dev "${P}A" "$dir" protocol all \
            u32 match u32 0 0 action mirred egress mirror dev "${P}M"
    done
    trap - ERR
    echo "caller ${P}a 10.$N.0.1 on ${P}A; callee ${P}b 10.$N.0.2 on ${P}B; sensor ${P}s on ${P}S"
    ;;
*)
    echo "usage: netns-mirror.sh up|down PREFIX [N]" >&2
    exit 2
    ;;
esac
