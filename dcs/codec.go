package dcs

// Keys of a cluster, relative to its prefix /<namespace>/<scope>/
// (spec/dcs-layout.md §1).
const (
	KeyInitialize = "initialize"
	KeyConfig     = "config"
	KeyLeader     = "leader"
	KeyMembers    = "members/" // followed by the member name
	KeyStatus     = "status"
	KeyOptime     = "optime/leader" // legacy status
	KeyHistory    = "history"
	KeyFailover   = "failover"
	KeySync       = "sync"
	KeyFailsafe   = "failsafe"
)

// Entry is one raw key as a key-value backend stores it, the input of
// BuildCluster.
type Entry struct {
	// Key is relative to the cluster prefix ("members/node1").
	Key string
	// Value is the stored bytes.
	Value []byte
	// Version is the backend version of the key.
	Version Version
	// Session is the lease/session/ephemeral owner the key is bound to, or "".
	Session string
}

// TODO(codec): the encoders, decoders and BuildCluster below are being
// written; the signatures are fixed.

// EncodeMember returns the compact JSON Patroni writes for a member key.
func EncodeMember(m *Member) []byte { panic("dcs: EncodeMember not implemented") }

// DecodeMember decodes a member key. On bad data it returns a member with
// only Name set and a *DecodeError.
func DecodeMember(name string, data []byte) (*Member, error) {
	panic("dcs: DecodeMember not implemented")
}

// EncodeStatus returns the JSON of the "status" key.
func EncodeStatus(s *Status) []byte { panic("dcs: EncodeStatus not implemented") }

// DecodeStatus decodes the "status" key (or a legacy bare optime integer).
func DecodeStatus(data []byte) (Status, error) { panic("dcs: DecodeStatus not implemented") }

// EncodeFailover returns the JSON of the "failover" key ("{}" for an empty
// request).
func EncodeFailover(f *Failover) []byte { panic("dcs: EncodeFailover not implemented") }

// DecodeFailover decodes the "failover" key, including the legacy
// "leader:candidate" form. It returns nil for an empty request.
func DecodeFailover(data []byte) (*Failover, error) {
	panic("dcs: DecodeFailover not implemented")
}

// EncodeSync returns the JSON of the "sync" key.
func EncodeSync(s *SyncState) []byte { panic("dcs: EncodeSync not implemented") }

// DecodeSync decodes the "sync" key. It returns nil for an empty state.
func DecodeSync(data []byte) (*SyncState, error) { panic("dcs: DecodeSync not implemented") }

// EncodeHistory returns the JSON of the "history" key.
func EncodeHistory(h *TimelineHistory) []byte { panic("dcs: EncodeHistory not implemented") }

// DecodeHistory decodes the "history" key.
func DecodeHistory(data []byte) (*TimelineHistory, error) {
	panic("dcs: DecodeHistory not implemented")
}

// EncodeFailsafe returns the JSON of the "failsafe" key.
func EncodeFailsafe(f Failsafe) []byte { panic("dcs: EncodeFailsafe not implemented") }

// DecodeFailsafe decodes the "failsafe" key.
func DecodeFailsafe(data []byte) (Failsafe, error) { panic("dcs: DecodeFailsafe not implemented") }

// DecodeConfig decodes the "config" key. On bad data it returns a config
// with Data {} and an empty Version (invalid), and a *DecodeError.
func DecodeConfig(data []byte) (*ClusterConfig, error) { panic("dcs: DecodeConfig not implemented") }

// BuildCluster assembles a snapshot from the raw entries of one prefix read.
// Unknown keys are ignored; undecodable ones degrade and are reported in
// Cluster.Problems.
func BuildCluster(entries []Entry) *Cluster { panic("dcs: BuildCluster not implemented") }
