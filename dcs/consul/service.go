package consul

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/pgwarden/pgwarden/dcs"
)

// Registrar is implemented by stores that register the member in a service
// catalog (spec/dcs-layout.md §6, "register_service"). dcs.Store has no
// notion of it; find it with a type assertion.
//
// With ServiceConfig.Register set, TouchMember keeps the registration up to
// date on its own (as Patroni does), so a daemon needs nothing more. Use
// Register directly to drive it from elsewhere.
type Registrar interface {
	// Register brings the catalog entry of the member in line with m: it
	// registers it with the role tag and an HTTP check on the REST API
	// when m's state is "running", deregisters it when the state is
	// "stopped", and leaves it alone otherwise. It does nothing when the
	// entry is already up to date or registration is off.
	Register(ctx context.Context, m *dcs.Member) error
	// Deregister removes the member's catalog entry, if any.
	Deregister(ctx context.Context) error
}

// serviceState is the last registration that succeeded. Guarded by
// Store.sessMu.
type serviceState struct {
	registered *api.AgentServiceRegistration
}

// Register implements Registrar.
func (s *Store) Register(ctx context.Context, m *dcs.Member) error {
	if s.isClosed() {
		return fmt.Errorf("consul: register service: %w", dcs.ErrClosed)
	}
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.syncService(ctx, m)
}

// Deregister implements Registrar.
func (s *Store) Deregister(ctx context.Context) error {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.deregister(ctx)
}

// syncService is Register with s.sessMu held.
func (s *Store) syncService(ctx context.Context, m *dcs.Member) error {
	if !s.cfg.Service.Register {
		if s.svc.registered != nil {
			return s.deregister(ctx)
		}
		return nil
	}
	switch m.State {
	case "running":
	case "stopped":
		return s.deregister(ctx)
	default:
		return nil
	}
	reg, err := s.registration(m)
	if err != nil {
		return fmt.Errorf("consul: register service: %w", err)
	}
	if s.svc.registered != nil && sameRegistration(s.svc.registered, reg) {
		return nil
	}
	err = s.call(ctx, "register service", false, func(ctx context.Context) error {
		return s.client.Agent().ServiceRegisterOpts(reg,
			api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx))
	})
	if err != nil {
		s.svc.registered = nil // retry on the next call
		return err
	}
	s.log.Info("registered service", "service", reg.Name, "id", reg.ID, "tags", reg.Tags)
	s.svc.registered = reg
	return nil
}

func (s *Store) deregister(ctx context.Context) error {
	if s.svc.registered == nil {
		return nil
	}
	id := s.svc.registered.ID
	err := s.retry(ctx, "deregister service", false, func(ctx context.Context) error {
		return s.client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
	})
	if err != nil {
		return err
	}
	s.log.Info("deregistered service", "id", id)
	s.svc.registered = nil
	return nil
}

// registration builds the catalog entry of m (spec/dcs-layout.md §6).
func (s *Store) registration(m *dcs.Member) (*api.AgentServiceRegistration, error) {
	conn, err := url.Parse(m.ConnURL)
	if err != nil || conn.Host == "" {
		return nil, fmt.Errorf("conn_url %q: want postgres://host:port/db", m.ConnURL)
	}
	port := 5432
	if p := conn.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("conn_url %q: port: %w", m.ConnURL, err)
		}
	}
	apiURL, err := url.Parse(m.APIURL)
	if err != nil || apiURL.Host == "" {
		return nil, fmt.Errorf("api_url %q: want http(s)://host:port/patroni", m.APIURL)
	}
	role := strings.ReplaceAll(m.Role, "_", "-")
	if role == "master" {
		role = "primary"
	}
	check := url.URL{Scheme: apiURL.Scheme, Host: apiURL.Host, Path: "/" + role}
	ttl := s.ttl // s.sessMu is held
	return &api.AgentServiceRegistration{
		ID:                s.cfg.Scope + "/" + s.cfg.Name,
		Name:              ServiceName(s.cfg.Scope),
		Tags:              serviceTags(s.cfg.Service.Tags, role),
		Address:           conn.Hostname(),
		Port:              port,
		EnableTagOverride: true,
		Check: &api.AgentServiceCheck{
			HTTP:                           check.String(),
			Interval:                       s.cfg.Service.CheckInterval.String(),
			DeregisterCriticalServiceAfter: fmt.Sprintf("%ds", int((5 * ttl).Seconds())),
			TLSServerName:                  s.cfg.Service.CheckTLSServerName,
		},
	}, nil
}

// serviceTags returns the configured tags plus the role tag, and "master"
// too for a primary, for consumers written before the rename.
func serviceTags(configured []string, role string) []string {
	tags := append(slices.Clip(configured), role)
	if role == "primary" {
		tags = append(tags, "master")
	}
	return tags
}

func sameRegistration(a, b *api.AgentServiceRegistration) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Address == b.Address && a.Port == b.Port &&
		slices.Equal(a.Tags, b.Tags) && a.Check.HTTP == b.Check.HTTP &&
		a.Check.Interval == b.Check.Interval && a.Check.TLSServerName == b.Check.TLSServerName &&
		a.Check.DeregisterCriticalServiceAfter == b.Check.DeregisterCriticalServiceAfter
}

// maxServiceName keeps "<role>.<name>.service.consul" within DNS's 253
// characters.
const maxServiceName = 230

// ServiceName turns a scope into the Consul service name: lower case, '.',
// '_' and ' ' become '-', any other character outside [a-z0-9-] becomes
// "u" and its code point in four or more decimal digits, cut at 230
// characters.
func ServiceName(scope string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(scope) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '.', r == '_', r == ' ':
			b.WriteByte('-')
		default:
			fmt.Fprintf(&b, "u%04d", r)
		}
	}
	name := b.String()
	if len(name) > maxServiceName {
		name = name[:maxServiceName]
	}
	return name
}
