package ledger

// KeyIndex remembers the results of an account's keyed commands (client
// idempotency keys and transfer leg IDs) in arrival order, up to a fixed
// number. It is the authority for duplicates while it is Complete: every key
// the account recorded inside the idempotency window is in it. Once a key
// that is still inside the window has been evicted, the index is
// incomplete and the owner must look up misses in storage (and Remember
// what it finds) before applying; that keeps memory bounded for hot accounts
// without ever forgetting a key inside the window.
type KeyIndex struct {
	// Cap is the most entries kept. Zero means DefaultKeysPerAccount.
	Cap int

	idx        map[string]int32
	ring       []keyEntry
	head       int  // oldest entry when the ring is full
	evicted    bool // an entry inside the window was evicted
	incomplete bool // the loader did not bring every key of the window
}

// DefaultKeysPerAccount is the default KeyIndex capacity.
const DefaultKeysPerAccount = 8192

type keyEntry struct {
	key    string
	hash   uint64
	result Result
}

// prior is a remembered outcome.
type prior struct {
	hash   uint64
	result Result
}

// NewKeyIndex returns an index holding cap entries; complete says whether
// the caller loaded every key of the window (true for a new account).
func NewKeyIndex(cap int, complete bool) KeyIndex {
	return KeyIndex{Cap: cap, incomplete: !complete}
}

// KeyRecord is a key's recorded outcome as storage keeps it: the request
// hash its command carried and its result.
type KeyRecord struct {
	Hash   uint64
	Result Result
}

// Complete reports whether a miss in the index is a real miss.
func (k *KeyIndex) Complete() bool { return !k.incomplete && !k.evicted }

// Room is how many more keys the index takes before it evicts one.
func (k *KeyIndex) Room() int { return k.capacity() - len(k.ring) }

// Len is the number of remembered keys.
func (k *KeyIndex) Len() int { return len(k.idx) }

func (k *KeyIndex) capacity() int {
	if k.Cap <= 0 {
		return DefaultKeysPerAccount
	}
	return k.Cap
}

// Lookup returns the remembered outcome of key unless it is older than the
// idempotency window measured at nowUs.
func (k *KeyIndex) Lookup(key string, nowUs int64) (prior, bool) {
	i, ok := k.idx[key]
	if !ok {
		return prior{}, false
	}
	e := &k.ring[i]
	if e.result.TimestampUs < nowUs-IdempotencyWindowUs {
		return prior{}, false
	}
	return prior{hash: e.hash, result: e.result}, true
}

// ClockSkewUs bounds how far record timestamps of one partition may go
// backwards: they are minted by the ingress nodes' clocks, which must
// agree within it. The key index counts an evicted outcome as possibly
// needed while it is within the idempotency window plus this margin.
const ClockSkewUs int64 = 3600 * 1_000_000

// Record returns key's remembered outcome as a KeyRecord (to be remembered
// again later), unless it is older than the idempotency window at nowUs.
func (k *KeyIndex) Record(key string, nowUs int64) (KeyRecord, bool) {
	p, ok := k.Lookup(key, nowUs)
	return KeyRecord{Hash: p.hash, Result: p.result}, ok
}

// Remember records key's outcome. A key already present is replaced (this
// happens only when an expired key is used again).
func (k *KeyIndex) Remember(key string, hash uint64, r Result) {
	if k.idx == nil {
		k.idx = make(map[string]int32, 4)
	}
	e := keyEntry{key: key, hash: hash, result: r}
	if i, ok := k.idx[key]; ok {
		k.ring[i] = e
		return
	}
	if len(k.ring) < k.capacity() {
		k.idx[key] = int32(len(k.ring))
		k.ring = append(k.ring, e)
		return
	}
	// The evicted outcome may still be asked for by a command whose
	// timestamp is up to ClockSkewUs earlier than this one's.
	old := &k.ring[k.head]
	if old.result.TimestampUs >= r.TimestampUs-IdempotencyWindowUs-ClockSkewUs {
		k.evicted = true
	}
	delete(k.idx, old.key)
	*old = e
	k.idx[key] = int32(k.head)
	k.head = (k.head + 1) % len(k.ring)
}
