package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CacheFile is the name of the dynamic configuration cache in the data
// directory (spec/config.md §1).
const CacheFile = "patroni.dynamic.json"

// SaveCache writes d to <dataDir>/patroni.dynamic.json atomically (a temp
// file renamed over the old one), with the data directory's permission
// bits minus execute (0600 for a 0700 data directory). The caller skips it
// while the node is uninitialized.
func SaveCache(dataDir string, d *Dynamic) error {
	st, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("config: save cache: %w", err)
	}
	mode := st.Mode().Perm() &^ 0o111
	tmp, err := os.CreateTemp(dataDir, "."+CacheFile+".*")
	if err != nil {
		return fmt.Errorf("config: save cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(d.JSON()); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("config: save cache: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("config: save cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("config: save cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config: save cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, CacheFile)); err != nil {
		return fmt.Errorf("config: save cache: %w", err)
	}
	return nil
}

// LoadCache reads <dataDir>/patroni.dynamic.json. It returns (nil, nil)
// when the file does not exist.
func LoadCache(dataDir string) (*Dynamic, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, CacheFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: load cache: %w", err)
	}
	d, err := ParseDynamic(data)
	if err != nil {
		return nil, fmt.Errorf("config: load cache %s: %w", filepath.Join(dataDir, CacheFile), err)
	}
	return d, nil
}
