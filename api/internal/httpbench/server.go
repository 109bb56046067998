package httpbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// fixedAnswer is what both floor servers send: a 200 with a 2-byte JSON
// body and the headers a health answer carries.
const fixedAnswer = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

// FixedHandler answers every request with a fixed 200 and closes the
// connection, doing no work of its own: served by net/http it is the floor
// of net/http plus the kernel.
type FixedHandler struct{}

var (
	closeValue  = []string{"close"}
	jsonValue   = []string{"application/json"}
	lengthValue = []string{"2"}
	fixedBody   = []byte("{}")
)

// ServeHTTP writes the fixed answer.
func (FixedHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h["Connection"] = closeValue
	h["Content-Type"] = jsonValue
	h["Content-Length"] = lengthValue
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(fixedBody)
}

// ServeFixed accepts connections on ln until ctx ends and answers each
// with a fixed 200 once the request head has arrived, then closes it. It
// uses no net/http: it is the floor of Go's network poller plus the
// kernel. It closes ln when ctx ends and returns nil once every connection
// it accepted is answered (a client that never sends its request head
// holds it up; this is a benchmark server).
func ServeFixed(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	bufs := sync.Pool{New: func() any { return new([4096]byte) }}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("httpbench: accept: %w", err)
		}
		wg.Go(func() {
			defer c.Close()
			buf := bufs.Get().(*[4096]byte)
			defer bufs.Put(buf)
			n := 0
			for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
				if n == len(buf) {
					return
				}
				m, err := c.Read(buf[n:])
				n += m
				if err != nil {
					return
				}
			}
			_, _ = c.Write([]byte(fixedAnswer))
		})
	}
}
