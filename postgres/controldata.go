package postgres

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ControlData are the pg_controldata facts pgwarden uses (spec/postgres.md
// §1). Raw holds every line with the leading "Current " stripped from keys.
type ControlData struct {
	SystemID           string
	State              string // "in production", "shut down", "shut down in recovery", "in archive recovery", ...
	CheckpointLSN      LSN
	CheckpointTimeline int
	MinRecoveryLSN     LSN
	MinRecoveryTLI     int
	WALLogHints        bool
	ChecksumVersion    int
	Raw                map[string]string
}

// CleanShutdown reports whether the cluster was shut down cleanly.
func (c ControlData) CleanShutdown() bool {
	return c.State == "shut down" || c.State == "shut down in recovery"
}

// ParseControlData parses pg_controldata output.
func ParseControlData(out string) (ControlData, error) {
	cd := ControlData{Raw: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k = strings.TrimPrefix(strings.TrimSpace(k), "Current ")
		cd.Raw[k] = strings.TrimSpace(v)
	}
	cd.SystemID = cd.Raw["Database system identifier"]
	cd.State = cd.Raw["Database cluster state"]
	if cd.SystemID == "" || cd.State == "" {
		return cd, fmt.Errorf("postgres: parse pg_controldata: no system identifier or state in %q", tail(out, 3))
	}
	var err error
	if s := cd.Raw["Latest checkpoint location"]; s != "" {
		if cd.CheckpointLSN, err = ParseLSN(s); err != nil {
			return cd, fmt.Errorf("postgres: parse pg_controldata: %w", err)
		}
	}
	if s := cd.Raw["Minimum recovery ending location"]; s != "" {
		if cd.MinRecoveryLSN, err = ParseLSN(s); err != nil {
			return cd, fmt.Errorf("postgres: parse pg_controldata: %w", err)
		}
	}
	cd.CheckpointTimeline, _ = strconv.Atoi(cd.Raw["Latest checkpoint's TimeLineID"])
	cd.MinRecoveryTLI, _ = strconv.Atoi(cd.Raw["Min recovery ending loc's timeline"])
	cd.WALLogHints = cd.Raw["wal_log_hints setting"] == "on"
	cd.ChecksumVersion, _ = strconv.Atoi(cd.Raw["Data page checksum version"])
	return cd, nil
}

// ControlData runs pg_controldata on the data directory.
func (m *Manager) ControlData(ctx context.Context) (ControlData, error) {
	if !m.IsInitialized() {
		return ControlData{}, fmt.Errorf("postgres: pg_controldata %s: %w", m.cfg.DataDir, ErrNoDataDir)
	}
	cmd, err := m.command(ctx, "pg_controldata", m.cfg.DataDir)
	if err != nil {
		return ControlData{}, err
	}
	cmd.Env = append(cmd.Env, "LANG=C", "LC_ALL=C") // field names are localized
	out, err := run(cmd)
	if err != nil {
		return ControlData{}, fmt.Errorf("postgres: pg_controldata: %w", err)
	}
	return ParseControlData(string(out))
}

// pg_control layout shared by every supported PostgreSQL version: the
// cluster state (an int32 enum) at byte 16 and the latest checkpoint
// location (uint64) at byte 32, host byte order.
const (
	controlStateOffset = 16
	controlCkptOffset  = 32
	// controlShutDown is DB_SHUTDOWNED ("shut down").
	controlShutDown = 1
)

// shutDownCheckpoint reads global/pg_control directly, which is cheap
// enough to poll every few milliseconds during a stop (pg_controldata is
// a process per read). It reports whether the state is "shut down" and
// the latest checkpoint location. Two identical reads are required, so a
// read racing the server's rewrite of the file is not trusted.
func (m *Manager) shutDownCheckpoint() (bool, LSN, error) {
	read := func() ([]byte, error) {
		f, err := os.Open(filepath.Join(m.cfg.DataDir, "global", "pg_control"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b := make([]byte, controlCkptOffset+8)
		if _, err := io.ReadFull(f, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	a, err := read()
	if err != nil {
		return false, 0, fmt.Errorf("postgres: read pg_control: %w", err)
	}
	b, err := read()
	if err != nil {
		return false, 0, fmt.Errorf("postgres: read pg_control: %w", err)
	}
	if !bytes.Equal(a, b) {
		return false, 0, errors.New("postgres: read pg_control: changed while reading")
	}
	state := int32(binary.NativeEndian.Uint32(a[controlStateOffset:]))
	return state == controlShutDown, LSN(binary.NativeEndian.Uint64(a[controlCkptOffset:])), nil
}
