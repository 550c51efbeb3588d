package ledger

import (
	"fmt"
	"testing"
)

// remember stores key with a result stamped at ts and hash derived from the
// key, so lookups can tell entries apart.
func remember(k *KeyIndex, key string, ts int64) {
	k.Remember(key, hashOf(key), Result{TimestampUs: ts, Amount: int64(len(key))})
}

func hashOf(key string) uint64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return h
}

// present lists which of keys the index finds at nowUs.
func present(k *KeyIndex, nowUs int64, keys ...string) string {
	out := ""
	for _, key := range keys {
		if p, ok := k.Lookup(key, nowUs); ok {
			if p.hash != hashOf(key) {
				return fmt.Sprintf("%s has the hash of another key", key)
			}
			out += key
		} else {
			out += "-"
		}
	}
	return out
}

func TestKeyIndexEvictsOldestFirst(t *testing.T) {
	k := NewKeyIndex(3, true)
	steps := []struct {
		add  string
		want string // presence of a, b, c, d, e, f after adding
		len  int
	}{
		{"a", "a-----", 1},
		{"b", "ab----", 2},
		{"c", "abc---", 3},
		{"d", "-bcd--", 3},
		{"e", "--cde-", 3},
		{"f", "---def", 3},
		{"a", "a---ef", 3}, // a again: evicts d, the oldest
	}
	for i, s := range steps {
		remember(&k, s.add, t0+int64(i))
		if got := present(&k, t0+10, "a", "b", "c", "d", "e", "f"); got != s.want {
			t.Fatalf("after adding %q: present %q; want %q", s.add, got, s.want)
		}
		if k.Len() != s.len || k.Room() != 3-s.len {
			t.Fatalf("after adding %q: Len %d, Room %d; want %d, %d", s.add, k.Len(), k.Room(), s.len, 3-s.len)
		}
	}
	rec, ok := k.Record("f", t0+10)
	if !ok || rec.Result.TimestampUs != t0+5 {
		t.Fatalf("Record(f) = %+v %v", rec, ok)
	}
	if _, ok := k.Record("b", t0+10); ok {
		t.Fatal("Record of an evicted key")
	}
}

func TestKeyIndexComplete(t *testing.T) {
	const w, s = IdempotencyWindowUs, ClockSkewUs
	tests := []struct {
		name     string
		cap      int
		complete bool    // NewKeyIndex's argument
		at       []int64 // record times of keys k0, k1, …
		want     bool
	}{
		{"new and empty", 2, true, nil, true},
		{"loaded incompletely", 2, false, nil, false},
		{"loaded incompletely, then filled", 2, false, []int64{0, 1}, false},
		{"full, nothing evicted", 2, true, []int64{0, 1}, true},
		{"evicts a key inside the window", 2, true, []int64{0, 1, 2}, false},
		{"evicts a key at the window's edge", 2, true, []int64{0, 1, w}, false},
		{"evicts a key within the clock-skew margin", 2, true, []int64{0, 1, w + s}, false},
		{"evicts an expired key", 2, true, []int64{0, 1, w + s + 1}, true},
		{"evicts two expired keys", 2, true, []int64{0, 1, w + s + 2, w + s + 3}, true},
		{"expired, then live", 2, true, []int64{0, w, w + 1, w + 2}, false},
		{"cap 1, expired each time", 1, true, []int64{0, w + s + 1, 2 * (w + s + 1), 3 * (w + s + 1)}, true},
		{"cap 1, one live eviction", 1, true, []int64{0, w + s + 1, 2 * (w + s + 1), 2*(w+s+1) + 1}, false},
	}
	for _, tt := range tests {
		k := NewKeyIndex(tt.cap, tt.complete)
		for i, ts := range tt.at {
			remember(&k, fmt.Sprintf("k%d", i), ts)
		}
		if got := k.Complete(); got != tt.want {
			t.Errorf("%s: Complete() = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestKeyIndexStaysIncomplete(t *testing.T) {
	// Once a live key has been evicted, later expired evictions do not
	// make the index complete again: the lost key may still be asked for.
	k := NewKeyIndex(1, true)
	remember(&k, "a", 0)
	remember(&k, "b", 1)
	if k.Complete() {
		t.Fatal("complete after evicting a live key")
	}
	remember(&k, "c", 10*IdempotencyWindowUs)
	if k.Complete() {
		t.Fatal("became complete again")
	}
}

func TestKeyIndexLookupExpiry(t *testing.T) {
	k := NewKeyIndex(4, true)
	remember(&k, "a", t0)
	tests := []struct {
		now  int64
		want bool
	}{
		{t0 - 1, true}, // an earlier record time (another ingress's clock) still finds it
		{t0, true},
		{t0 + IdempotencyWindowUs, true},
		{t0 + IdempotencyWindowUs + 1, false},
	}
	for _, tt := range tests {
		if _, ok := k.Lookup("a", tt.now); ok != tt.want {
			t.Errorf("Lookup at t0%+d: %v; want %v", tt.now-t0, ok, tt.want)
		}
	}
	if _, ok := k.Lookup("missing", t0); ok {
		t.Error("found a key never remembered")
	}
	var zero KeyIndex
	if _, ok := zero.Lookup("a", t0); ok || zero.Len() != 0 || !zero.Complete() {
		t.Error("zero KeyIndex is not an empty, complete index")
	}
}

func TestKeyIndexReplace(t *testing.T) {
	k := NewKeyIndex(2, true)
	remember(&k, "a", 0)
	remember(&k, "b", 1)
	// Replacing a present key (an expired key used again) does not evict.
	k.Remember("a", 42, Result{TimestampUs: IdempotencyWindowUs + 5, Amount: 7})
	if k.Len() != 2 || !k.Complete() {
		t.Fatalf("after replace: Len %d, Complete %v", k.Len(), k.Complete())
	}
	p, ok := k.Lookup("a", IdempotencyWindowUs+5)
	if !ok || p.hash != 42 || p.result.Amount != 7 {
		t.Fatalf("replaced entry: %v %+v", ok, p)
	}
	if present(&k, 1, "b") != "b" {
		t.Fatal("replace lost another key")
	}
}

func TestKeyIndexDefaultCap(t *testing.T) {
	var k KeyIndex // Cap 0: DefaultKeysPerAccount
	for i := range DefaultKeysPerAccount {
		remember(&k, fmt.Sprintf("k%d", i), t0)
	}
	if k.Len() != DefaultKeysPerAccount || !k.Complete() {
		t.Fatalf("at the default cap: Len %d, Complete %v", k.Len(), k.Complete())
	}
	remember(&k, "one-more", t0)
	if k.Len() != DefaultKeysPerAccount || k.Complete() || present(&k, t0, "k0", "k1", "one-more") != "-k1one-more" {
		t.Fatalf("past the default cap: Len %d, Complete %v, %s", k.Len(), k.Complete(), present(&k, t0, "k0", "k1", "one-more"))
	}
}

// TestApplyWithSmallKeyIndex checks that Apply goes through the index: a key
// evicted from a full index is no longer deduplicated, and the index says so
// by turning incomplete (the owner then has to consult storage).
func TestApplyWithSmallKeyIndex(t *testing.T) {
	// Already open, so that only the credits below use the tiny index (an
	// open would take a slot too: unkeyed commands dedupe on their TxID).
	a := &Account{ID: acctA, Exists: true, Currency: "USD", Status: AccountActive, Version: 1, Seq: 1, Keys: NewKeyIndex(2, true)}
	c1 := creditCmd(acctA, 1, withKey("k1"), withTime(t0+1))
	Apply(a, &c1)
	Apply(a, ptr(creditCmd(acctA, 1, withKey("k2"), withTime(t0+2))))
	if !a.Keys.Complete() {
		t.Fatal("incomplete before any eviction")
	}
	if e := Apply(a, &c1); !e.Result.Replayed {
		t.Fatalf("k1 not replayed while in the index: %+v", e.Result)
	}
	Apply(a, ptr(creditCmd(acctA, 1, withKey("k3"), withTime(t0+3))))
	if a.Keys.Complete() {
		t.Fatal("complete after evicting k1 inside the window")
	}
	if e := Apply(a, &c1); e.Result.Replayed || a.Balance != 4 {
		t.Fatalf("k1 after eviction: %+v, balance %d", e.Result, a.Balance)
	}
}
