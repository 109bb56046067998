package zookeeper

import (
	"slices"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/pgwarden/pgwarden/dcs"
)

// dirMembers is the cache key of the members directory (its children).
const dirMembers = "members"

// dataKeys are the fixed keys of a cluster the cache keeps a data (or
// exists) watch on, relative to the cluster path.
var dataKeys = []string{
	dcs.KeyInitialize, dcs.KeyConfig, dcs.KeyLeader, dcs.KeyStatus, dcs.KeyOptime,
	dcs.KeyHistory, dcs.KeyFailover, dcs.KeySync, dcs.KeyFailsafe,
}

// wakeKeys are the keys whose changes wake the HA loop (dcs.Store.Changes).
var wakeKeys = map[string]bool{
	dcs.KeyLeader: true, dcs.KeyFailover: true, dcs.KeyConfig: true,
	dcs.KeySync: true, dcs.KeyInitialize: true,
}

func isMemberKey(key string) bool { return strings.HasPrefix(key, dcs.KeyMembers) }

// znode is one cached znode.
type znode struct {
	data []byte
	stat zk.Stat
}

// readResult is the outcome of reading one cache key.
type readResult struct {
	present bool
	node    znode
	names   []string // dirMembers: the member names
}

// cache is the watch-fed copy of the cluster's znodes. Every cached znode
// has a watch armed on the server (data watch when present, exists watch on
// absent fixed keys, a child watch on the members directory); a watch event
// marks its key dirty and the next Cluster re-reads only dirty keys, which
// re-arms their watches. Losing the connection or the session invalidates
// everything (a full reload), because events may have been missed.
//
// All fields are guarded by Store.mu.
type cache struct {
	loaded bool
	nodes  map[string]*znode
	dirty  map[string]bool
	// seq counts this Store's own writes per key: a read that raced with
	// one of them is not applied (the key is re-read instead).
	seq map[string]uint64
}

func newCache() cache {
	return cache{nodes: map[string]*znode{}, dirty: map[string]bool{}, seq: map[string]uint64{}}
}

// invalidate forces a full reload on the next refresh.
func (c *cache) invalidate() { c.loaded = false }

// fresh returns the cached node of key when the cache is known to be
// current for it; ok is false when key must be read from the server.
func (c *cache) fresh(key string) (n *znode, ok bool) {
	if !c.loaded || c.dirty[key] {
		return nil, false
	}
	return c.nodes[key], true
}

// take returns the keys to read and their write sequence numbers, and
// clears the dirty set. full reports a full reload.
func (c *cache) take() (keys []string, seqs []uint64, full bool) {
	if !c.loaded {
		full = true
		c.loaded = true
		for _, k := range dataKeys {
			c.dirty[k] = true
		}
		c.dirty[dirMembers] = true
		for k := range c.nodes {
			c.dirty[k] = true
		}
	}
	for k := range c.dirty {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		seqs = append(seqs, c.seq[k])
	}
	clear(c.dirty)
	return keys, seqs, full
}

// failed puts back keys whose read failed.
func (c *cache) failed(keys []string, full bool) {
	for _, k := range keys {
		c.dirty[k] = true
	}
	if full {
		c.loaded = false
	}
}

// apply stores what a refresh read, unless this Store wrote the key since.
func (c *cache) apply(keys []string, seqs []uint64, res []readResult) {
	read := map[string]bool{}
	for _, k := range keys {
		read[k] = true
	}
	for i, k := range keys {
		if c.seq[k] != seqs[i] {
			c.dirty[k] = true
			continue
		}
		r := res[i]
		if k == dirMembers {
			live := map[string]bool{}
			for _, n := range r.names {
				mk := dcs.KeyMembers + n
				live[mk] = true
				if _, ok := c.nodes[mk]; !ok && !read[mk] {
					c.dirty[mk] = true
				}
			}
			for mk := range c.nodes {
				if isMemberKey(mk) && !live[mk] && !read[mk] {
					delete(c.nodes, mk)
				}
			}
			continue
		}
		if r.present {
			n := r.node
			c.nodes[k] = &n
		} else {
			delete(c.nodes, k)
		}
	}
}

// wrote records a write of this Store: stat non-nil stores the new value;
// a nil stat (a create, whose stat the client does not return) marks the
// key for re-reading; deleted drops it.
func (c *cache) wrote(key string, data []byte, stat *zk.Stat, deleted bool) {
	c.seq[key]++
	switch {
	case deleted:
		delete(c.nodes, key)
	case stat != nil:
		c.nodes[key] = &znode{data: data, stat: *stat}
	default:
		c.dirty[key] = true
		if isMemberKey(key) {
			c.dirty[dirMembers] = true
		}
	}
}

// entries returns the cached znodes as dcs entries, sorted by key.
func (c *cache) entries() []dcs.Entry {
	keys := make([]string, 0, len(c.nodes))
	for k := range c.nodes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]dcs.Entry, 0, len(keys))
	for _, k := range keys {
		n := c.nodes[k]
		out = append(out, dcs.Entry{Key: k, Value: slices.Clone(n.data), Version: version(&n.stat),
			Session: owner(&n.stat)})
	}
	return out
}

// version is the dcs.Version of a znode: its mzxid, the zxid of its last
// change. Unlike the znode version it never repeats after a delete and
// re-create, and it is what Patroni exposes as the config's
// modify-version (spec/dcs-layout.md §7).
func version(st *zk.Stat) dcs.Version {
	return dcs.Version(strconv.FormatInt(st.Mzxid, 10))
}

// owner names the session an ephemeral znode belongs to ("" when
// persistent), as zkCli prints it.
func owner(st *zk.Stat) string {
	if st.EphemeralOwner == 0 {
		return ""
	}
	return sessionName(st.EphemeralOwner)
}

func sessionName(id int64) string { return "0x" + strconv.FormatInt(id, 16) }
