package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgwarden/pgwarden/config"
	"github.com/pgwarden/pgwarden/ha"
)

// Linux watchdog ioctls (linux/watchdog.h).
const (
	wdiocKeepalive  = 0x80045705
	wdiocSetTimeout = 0xC0045706
	wdiocGetTimeout = 0x80045707
)

// devWatchdog drives /dev/watchdog (spec/ha-loop.md §16): opened and set
// to ttl − safety_margin when the node starts acting as primary, kept alive
// after every lease renewal, closed with the magic 'V' when disarmed so
// the device stops counting.
type devWatchdog struct {
	device   string
	timeout  int // seconds
	loopWait int // seconds
	required bool
	log      *slog.Logger

	mu sync.Mutex
	f  *os.File // nil while disarmed
}

var _ ha.Watchdog = (*devWatchdog)(nil)

// newWatchdog returns the watchdog and the ha mode for the configuration
// section; nil when the mode is off.
func newWatchdog(c *config.Watchdog, s config.Settings, log *slog.Logger) (*devWatchdog, ha.WatchdogMode) {
	mode, device, margin := "automatic", "/dev/watchdog", 5
	if c != nil {
		if c.Mode != "" {
			mode = c.Mode
		}
		if c.Device != "" {
			device = c.Device
		}
		if c.SafetyMargin != nil {
			margin = *c.SafetyMargin
		}
	}
	timeout := s.TTL - margin
	if margin == -1 {
		timeout = s.TTL / 2
	}
	w := &devWatchdog{device: device, timeout: timeout, loopWait: s.LoopWait, log: log}
	switch mode {
	case "required":
		w.required = true
		return w, ha.WatchdogRequired
	case "automatic":
		return w, ha.WatchdogAutomatic
	}
	return nil, ha.WatchdogOff
}

// Usable reports whether the device exists. Whether ttl − safety_margin
// suits loop_wait is the loop's check, made with the current dynamic
// configuration (spec/ha-loop.md §16); w.timeout and w.loopWait are the
// startup values.
func (w *devWatchdog) Usable() bool {
	_, err := os.Stat(w.device)
	return err == nil
}

// Arm activates the device or sends a keepalive. The loop passes the
// timeout for the current ttl (ttl − safety_margin, spec/ha-loop.md §16);
// a changed timeout is set on the open device. Timeout 0 feeds an open
// device and keeps its timeout (the current one is not usable), and never
// activates one. In automatic mode a failure is logged and ignored, as
// Patroni does.
func (w *devWatchdog) Arm(timeout time.Duration) error {
	w.mu.Lock()
	err := w.arm(int(timeout / time.Second))
	w.mu.Unlock()
	if err != nil && !w.required {
		w.log.Warn("watchdog not activated (mode automatic)", "device", w.device, "err", err)
		return nil
	}
	return err
}

// arm does Arm with the timeout in seconds, under w.mu. The loop checked
// the timeout against the current loop_wait; loopWait, the startup value,
// only guards a device whose actual timeout cannot be set (Patroni's
// _set_timeout check). An open device is always fed, or it would reset a
// healthy primary.
func (w *devWatchdog) arm(s int) error {
	if s <= 0 && w.f == nil {
		return nil
	}
	if s > 0 && s != w.timeout {
		w.timeout = s
		if w.f != nil {
			if err := unix.IoctlSetPointerInt(int(w.f.Fd()), wdiocSetTimeout, s); err != nil {
				w.log.Warn("watchdog timeout could not be changed", "device", w.device, "want", s, "err", err)
			}
		}
	}
	if w.f == nil {
		if w.timeout <= 0 {
			return fmt.Errorf("watchdog timeout %d s is not positive", w.timeout)
		}
		f, err := os.OpenFile(w.device, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open watchdog %s: %w", w.device, err)
		}
		fd := int(f.Fd())
		setErr := unix.IoctlSetPointerInt(fd, wdiocSetTimeout, w.timeout)
		actual, getErr := unix.IoctlGetInt(fd, wdiocGetTimeout)
		if getErr == nil && actual < w.loopWait {
			_, _ = f.Write([]byte("V"))
			_ = f.Close()
			return fmt.Errorf("watchdog %s timeout %d s is shorter than loop_wait %d s", w.device, actual, w.loopWait)
		}
		if setErr != nil && (getErr != nil || actual > w.timeout) {
			if w.required {
				_, _ = f.Write([]byte("V"))
				_ = f.Close()
				return fmt.Errorf("set watchdog %s timeout to %d s: %w", w.device, w.timeout, setErr)
			}
			w.log.Warn("watchdog timeout could not be set", "device", w.device, "want", w.timeout, "err", setErr)
		}
		w.f = f
		w.log.Info("watchdog activated", "device", w.device, "timeout", w.timeout)
	}
	if err := unix.IoctlSetInt(int(w.f.Fd()), wdiocKeepalive, 0); err != nil {
		if _, werr := w.f.Write([]byte{0}); werr != nil {
			return fmt.Errorf("watchdog keepalive: %w", errors.Join(err, werr))
		}
	}
	return nil
}

// Disarm closes the device with the magic character.
func (w *devWatchdog) Disarm() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	_, werr := w.f.Write([]byte("V"))
	cerr := w.f.Close()
	w.f = nil
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("disarm watchdog %s: %w", w.device, err)
	}
	w.log.Info("watchdog disarmed", "device", w.device)
	return nil
}
