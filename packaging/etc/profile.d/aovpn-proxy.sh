# aovpn: the web proxy of a ForceTunnel VPN profile (its Proxy/Manual/Server), while the
# tunnel is up. The agent writes /run/aovpn/proxy/*.env (host[:port] values it has checked).
for aovpn_proxy_env in /run/aovpn/proxy/*.env; do
    if [ -r "$aovpn_proxy_env" ]; then
        set -a
        . "$aovpn_proxy_env"
        set +a
    fi
done
unset aovpn_proxy_env
