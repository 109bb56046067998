package zookeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// ExhibitorPath is the Exhibitor REST endpoint that lists the ensemble:
// {"servers":["10.0.0.1","10.0.0.2"],"port":2181}.
const ExhibitorPath = "/exhibitor/v1/cluster/list"

// exhibitorTimeout bounds one request to one Exhibitor host.
const exhibitorTimeout = 5 * time.Second

type exhibitorPoller struct {
	cfg    *Exhibitor
	client *http.Client
	log    *slog.Logger
}

func newExhibitorPoller(cfg *Exhibitor, log *slog.Logger) *exhibitorPoller {
	return &exhibitorPoller{cfg: cfg, client: &http.Client{Timeout: exhibitorTimeout}, log: log}
}

// exhibitorList is the body of ExhibitorPath.
type exhibitorList struct {
	Servers []string `json:"servers"`
	Port    int      `json:"port"`
}

// poll asks the Exhibitor hosts in turn for the ensemble and returns it as
// sorted "host:port" entries.
func (e *exhibitorPoller) poll(ctx context.Context) ([]string, error) {
	var errs []error
	for _, h := range e.cfg.Hosts {
		hosts, err := e.pollOne(ctx, h)
		if err == nil {
			return hosts, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (e *exhibitorPoller) pollOne(ctx context.Context, host string) ([]string, error) {
	url := e.cfg.Scheme + "://" + net.JoinHostPort(host, strconv.Itoa(e.cfg.Port)) + ExhibitorPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var l exhibitorList
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(l.Servers) == 0 || l.Port <= 0 {
		return nil, fmt.Errorf("GET %s: no servers in %s", url, body)
	}
	out := make([]string, 0, len(l.Servers))
	for _, s := range l.Servers {
		out = append(out, net.JoinHostPort(s, strconv.Itoa(l.Port)))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// pollExhibitor re-reads the ensemble every poll interval until Close. When
// it changed, new connections use the new list at once, and when the
// server of the current connection left the ensemble, the client is moved
// to one that is in it; the session stays.
func (s *Store) pollExhibitor(e *exhibitorPoller) {
	ticker := s.cfg.Clock.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-ticker.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), exhibitorTimeout*time.Duration(len(e.cfg.Hosts)))
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		hosts, err := e.poll(ctx)
		cancel()
		if err != nil {
			s.log.Warn("exhibitor poll failed; keeping the last ensemble", "err", err)
			continue
		}
		if !s.hosts.set(hosts) {
			continue
		}
		s.log.Info("exhibitor: zookeeper ensemble changed", "hosts", hosts)
		s.mu.Lock()
		ss := s.sess
		s.mu.Unlock()
		if ss != nil {
			ss.hosts.set(hosts)
		}
		if ss != nil && !slices.Contains(hosts, ss.conn.Server()) {
			ss.dropConnection()
		}
	}
}
