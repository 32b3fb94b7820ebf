package server

import (
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
)

// resolveProxy returns the namespaces with their proxy endpoints
// resolved: "" takes the top-level endpoint, "off" none. useBackend
// reports whether any hook is configured at all.
func resolveProxy(cfg config.Config) (namespaces []auth.Namespace, useBackend bool) {
	resolve := func(ns, top string) string {
		switch ns {
		case "":
			return top
		case auth.ProxyOff:
			return ""
		}
		return ns
	}
	useBackend = cfg.ProxyConnectEndpoint != "" || cfg.ProxySubscribeEndpoint != "" || cfg.ProxyPublishEndpoint != "" || cfg.ProxyRPCEndpoint != ""
	for _, ns := range cfg.Namespaces {
		ns.ProxySubscribe = resolve(ns.ProxySubscribe, cfg.ProxySubscribeEndpoint)
		ns.ProxyPublish = resolve(ns.ProxyPublish, cfg.ProxyPublishEndpoint)
		ns.ProxyRPC = resolve(ns.ProxyRPC, cfg.ProxyRPCEndpoint)
		useBackend = useBackend || ns.ProxySubscribe != "" || ns.ProxyPublish != "" || ns.ProxyRPC != ""
		namespaces = append(namespaces, ns)
	}
	return namespaces, useBackend
}
