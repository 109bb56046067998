//go:build !linux

package api

import "net"

// listenConfig sets TCP keep-alive on each accepted connection.
func listenConfig() net.ListenConfig {
	return net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true,
		Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount}}
}
