package storage_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/bursar/bursar/ledger"
	"github.com/bursar/bursar/storage"
	"github.com/bursar/bursar/storage/pgtest"
	"github.com/google/uuid"
)

func openStore(t *testing.T) *storage.Store {
	t.Helper()
	ctx := context.Background()
	s, err := storage.Open(ctx, storage.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// applyAll applies commands to in-memory accounts and returns the batch a
// flush would write.
func applyAll(t *testing.T, accts map[uuid.UUID]*ledger.Account, p int32, firstOffset int64, cmds ...ledger.Command) *storage.Batch {
	t.Helper()
	b := &storage.Batch{Accounts: map[uuid.UUID]*ledger.Account{}}
	for i := range cmds {
		c := &cmds[i]
		a := accts[c.AccountID]
		if a == nil {
			a = &ledger.Account{ID: c.AccountID}
			accts[c.AccountID] = a
		}
		e := ledger.Apply(a, c)
		if !e.Result.Replayed && !e.Result.Unrecorded {
			b.Rows = append(b.Rows, storage.TxRow{Cmd: c, Result: e.Result, Partition: p, Offset: firstOffset + int64(i)})
		}
		if e.Changed {
			snap := *a
			snap.Keys = ledger.KeyIndex{}
			b.Accounts[a.ID] = &snap
		}
	}
	return b
}

func cmd(kind ledger.Kind, acct uuid.UUID, amount int64, key string, ts int64) ledger.Command {
	c := ledger.Command{Kind: kind, TxID: uuid.New(), AccountID: acct, Amount: amount, Currency: "USD",
		IdemKey: key, TimestampUs: ts, CustomerID: "cust", AccountType: "checking"}
	c.RequestHash = ledger.HashRequest(&c)
	return c
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := openStore(t)
	applied, err := s.Migrate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Fatalf("second migrate applied %v", applied)
	}
	// 0003: account rows leave room for in-place (HOT) updates.
	var opts []string
	if err := s.Pool().QueryRow(context.Background(), `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE relname = 'accounts'`).Scan(&opts); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(opts, "fillfactor=70") {
		t.Fatalf("accounts reloptions %v, want fillfactor=70", opts)
	}
}

func TestFlushLoadAndAudit(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	epoch, next, err := s.Acquire(ctx, 3, "n1")
	if err != nil || epoch != 1 || next != 0 {
		t.Fatalf("acquire = %d %d %v", epoch, next, err)
	}
	a, b := uuid.New(), uuid.New()
	now := time.Now().UnixMicro()
	accts := map[uuid.UUID]*ledger.Account{}
	openA := cmd(ledger.KindOpen, a, 0, "open-a", now)
	openA.Owner = "0190f1a2-0000-7000-8000-0000000000cc"
	batch := applyAll(t, accts, 3, 0,
		openA,
		cmd(ledger.KindOpen, b, 0, "", now),
		cmd(ledger.KindCredit, a, 1000, "k1", now+1),
		cmd(ledger.KindDebit, a, 300, "k2", now+2),
		cmd(ledger.KindDebit, a, 5000, "k3", now+3), // refused: insufficient funds, recorded
		cmd(ledger.KindCredit, b, 50, "", now+4),
	)
	batch.Marks = []storage.PartitionMark{{Partition: 3, Epoch: epoch, NextOffset: 6}}
	if len(batch.Accounts) != 2 {
		t.Fatalf("accounts written once each: got %d", len(batch.Accounts))
	}
	if err := s.Flush(ctx, batch); err != nil {
		t.Fatal(err)
	}

	loaded, err := s.LoadAccounts(ctx, []uuid.UUID{a, b, uuid.New()}, now-ledger.IdempotencyWindowUs, 2)
	if err != nil {
		t.Fatal(err)
	}
	la := loaded[a]
	if !la.Exists || la.Balance != 700 || la.Version != 3 || la.Seq != 4 || la.Owner != openA.Owner {
		t.Fatalf("loaded a = %+v", la)
	}
	if got, err := s.Account(ctx, a); err != nil || got.Owner != openA.Owner {
		t.Fatalf("account a read back: owner %q, %v", got.Owner, err)
	}
	// Three keyed rows but a cap of two: the index must say it is incomplete.
	if la.Keys.Len() != 2 || la.Keys.Complete() {
		t.Fatalf("keys len %d complete %v, want 2 and incomplete", la.Keys.Len(), la.Keys.Complete())
	}
	if lb := loaded[b]; lb.Balance != 50 || !lb.Keys.Complete() || lb.Owner != "" {
		t.Fatalf("loaded b = %+v", lb)
	}
	for id, acc := range loaded {
		if id != a && id != b && acc.Exists {
			t.Fatalf("unknown ID loaded as existing")
		}
	}

	// The refused debit replays from storage with its original outcome.
	// One query answers several keys: found ones with their outcome,
	// unused ones absent, another account's keys not at all.
	recs, err := s.LookupKeys(ctx, a, []string{"k3", "nope", "k1"}, now-ledger.IdempotencyWindowUs)
	if err != nil {
		t.Fatal(err)
	}
	k3, found := recs["k3"]
	if r := k3.Result; !found || r.Code != ledger.CodeInsufficientFunds || r.Status != ledger.StatusFailed || k3.Hash == 0 || r.AccountID != a {
		t.Fatalf("lookup k3 = %v %+v", found, k3)
	}
	if _, found := recs["nope"]; found {
		t.Fatal("found a key never used")
	}
	if k1, found := recs["k1"]; !found || k1.Result.Kind != ledger.KindCredit || len(recs) != 2 {
		t.Fatalf("lookup = %+v", recs)
	}
	if recs, err := s.LookupKeys(ctx, b, []string{"k3"}, 0); err != nil || len(recs) != 0 {
		t.Fatalf("another account's key found: %+v %v", recs, err)
	}
	if recs, err := s.LookupKeys(ctx, a, []string{"k3"}, now+4); err != nil || len(recs) != 0 {
		t.Fatalf("a key older than the window found: %+v %v", recs, err)
	}

	hist, err := s.History(ctx, a, 0, 2)
	if err != nil || len(hist) != 2 || hist[0].Seq != 4 || hist[1].Seq != 3 {
		t.Fatalf("history page 1 = %+v %v", hist, err)
	}
	hist, err = s.History(ctx, a, hist[1].Seq, 10)
	if err != nil || len(hist) != 1 || hist[0].Seq != 2 {
		t.Fatalf("history page 2 = %+v %v", hist, err)
	}

	rep, err := s.Audit(ctx, map[int32]int64{3: 6})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean || rep.Unflushed != 0 {
		t.Fatalf("audit not clean: %+v", rep)
	}
	if len(rep.Currencies) != 1 || rep.Currencies[0].Balances != 750 {
		t.Fatalf("totals = %+v", rep.Currencies)
	}

	// Corrupt a balance behind the ledger's back: the audit must notice.
	if _, err := s.Pool().Exec(ctx, "UPDATE accounts SET balance = balance + 1 WHERE account_id = $1", [16]byte(b)); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Audit(ctx, map[int32]int64{3: 9})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Clean || rep.Unflushed != 3 {
		t.Fatalf("audit missed the corruption or the lag: clean=%v unflushed=%d", rep.Clean, rep.Unflushed)
	}
	failed := map[string]bool{}
	for _, c := range rep.Checks {
		if !c.OK {
			failed[c.Name] = true
		}
	}
	if !failed["balance_equals_entries"] || !failed["money_conserved_per_currency"] {
		t.Fatalf("failed checks = %v", failed)
	}
}

func TestFencedFlushWritesNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	old, _, err := s.Acquire(ctx, 0, "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Acquire(ctx, 0, "new"); err != nil {
		t.Fatal(err)
	}
	a := uuid.New()
	batch := applyAll(t, map[uuid.UUID]*ledger.Account{}, 0, 0, cmd(ledger.KindOpen, a, 0, "", time.Now().UnixMicro()))
	batch.Marks = []storage.PartitionMark{{Partition: 0, Epoch: old, NextOffset: 1}}
	err = s.Flush(ctx, batch)
	var fe *storage.FencedError
	if !errors.As(err, &fe) || len(fe.Partitions) != 1 || fe.Partitions[0] != 0 {
		t.Fatalf("flush under an old epoch = %v, want FencedError{[0]}", err)
	}
	if storage.Retriable(err) {
		t.Fatal("a fenced flush must not be retried")
	}
	if _, err := s.Account(ctx, a); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("fenced flush wrote the account: %v", err)
	}
	parts, err := s.Partitions(ctx)
	if err != nil || len(parts) != 1 || parts[0].NextOffset != 0 || parts[0].Owner != "new" || parts[0].Epoch != old+1 {
		t.Fatalf("partitions = %+v %v", parts, err)
	}
}

func TestFlushRefusesDuplicateLegAndRegression(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	epoch, _, _ := s.Acquire(ctx, 1, "n")
	a := uuid.New()
	accts := map[uuid.UUID]*ledger.Account{}
	now := time.Now().UnixMicro()
	first := applyAll(t, accts, 1, 0, cmd(ledger.KindOpen, a, 0, "", now), cmd(ledger.KindCredit, a, 10, "", now))
	first.Marks = []storage.PartitionMark{{Partition: 1, Epoch: epoch, NextOffset: 2}}
	if err := s.Flush(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The same batch again (a retry after its COMMIT's answer was lost)
	// finds its marks in place: it has committed, nothing is written twice.
	if err := s.Flush(ctx, first); err != nil {
		t.Fatalf("the same batch again: %v, want nil (already committed)", err)
	}
	if acc, err := s.Account(ctx, a); err != nil || acc.Balance != 10 {
		t.Fatalf("account after the repeated batch = %+v %v", acc, err)
	}
	// Writing the same rows again under a new mark (a leg applied twice)
	// must fail as a constraint violation that is never retried, and
	// change nothing.
	first.Marks[0].NextOffset = 3
	err := s.Flush(ctx, first)
	if err == nil || storage.Retriable(err) {
		t.Fatalf("duplicate rows: err=%v retriable=%v", err, storage.Retriable(err))
	}
	acc, err := s.Account(ctx, a)
	if err != nil || acc.Balance != 10 || acc.Seq != 2 {
		t.Fatalf("account after refused flush = %+v %v", acc, err)
	}
	// An account state older than the stored one is an invariant violation.
	stale := &storage.Batch{Accounts: map[uuid.UUID]*ledger.Account{a: {ID: a, Exists: true, Currency: "USD", Status: ledger.AccountActive, Seq: 1, Version: 1}}}
	if err := s.Flush(ctx, stale); !errors.Is(err, storage.ErrInvariant) {
		t.Fatalf("stale account flush = %v, want ErrInvariant", err)
	}
}

// A node paused inside a flush transaction must not block the takeover of
// its partitions for longer than the idle-in-transaction timeout.
func TestPausedFlushDoesNotBlockTakeover(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s, err := storage.Open(ctx, storage.Config{URL: url, IdleInTxTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	epoch, _, err := s.Acquire(ctx, 0, "zombie")
	if err != nil {
		t.Fatal(err)
	}
	// The zombie's flush took the row lock, then the process froze.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the server ended it
	if _, err := tx.Exec(ctx, "UPDATE partitions SET next_offset = 1 WHERE partition = 0 AND epoch = $1", epoch); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, _, err := s.Acquire(ctx, 0, "heir")
	if err != nil {
		t.Fatal(err)
	}
	if got != epoch+1 {
		t.Fatalf("heir got epoch %d, want %d", got, epoch+1)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("takeover waited %s for a paused transaction", waited)
	}
	// The zombie's transaction is gone: its commit fails and nothing of it
	// landed.
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("the paused transaction committed after its session was ended")
	}
	rows, err := s.Partitions(ctx)
	if err != nil || len(rows) != 1 || rows[0].NextOffset != 0 || rows[0].Owner != "heir" {
		t.Fatalf("partitions = %+v %v", rows, err)
	}
}

// TestLookupKeysFindsTombstones: a transfer leg refused by an account that
// did not exist leaves no transactions row, only a tombstone; a key lookup
// for that leg must find it, or a replayed copy arriving once the account
// exists (and its bounded key index has let the tombstone go) would be
// credited.
func TestLookupKeysFindsTombstones(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	ghost := uuid.New()
	now := time.Now().UnixMicro()
	leg := ledger.Command{Kind: ledger.KindTransferCredit, TxID: uuid.New(), AccountID: ghost, Counterparty: uuid.New(),
		Amount: 700, Currency: "USD", TimestampUs: now}
	leg.RequestHash = ledger.HashRequest(&leg)
	e := ledger.Apply(&ledger.Account{ID: ghost}, &leg)
	if !e.Result.Tombstone {
		t.Fatalf("leg to a missing account: %+v", e.Result)
	}
	if err := s.Flush(ctx, &storage.Batch{Tombstones: []storage.TxRow{{Cmd: &leg, Result: e.Result, Partition: 0, Offset: 0}},
		Accounts: map[uuid.UUID]*ledger.Account{}}); err != nil {
		t.Fatal(err)
	}
	key := ledger.DedupeKey(&leg)
	other := ledger.DedupeKey(&ledger.Command{Kind: ledger.KindTransferCredit, TxID: uuid.New()})
	recs, err := s.LookupKeys(ctx, ghost, []string{key, other}, now-ledger.IdempotencyWindowUs)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := recs[key]
	if !ok || len(recs) != 1 || !rec.Result.Tombstone || rec.Result.Kind != ledger.KindTransferCredit ||
		rec.Result.TxID != leg.TxID || rec.Hash != leg.RequestHash || rec.Result.Code != e.Result.Code {
		t.Fatalf("lookup = %+v, want the tombstone of %s only", recs, key)
	}
	// Outside the window it is not found.
	if recs, err := s.LookupKeys(ctx, ghost, []string{key}, now+1); err != nil || len(recs) != 0 {
		t.Fatalf("tombstone older than the window found: %+v %v", recs, err)
	}
}

// TestCheckLogIdentity: the first log a database sees is recorded; the
// same log passes; another cluster or another topic is ErrOtherLog.
func TestCheckLogIdentity(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		cluster, topic string
		recorded       bool
		other          bool
	}{
		{"c1", "t1", true, false},
		{"c1", "t1", false, false},
		{"c2", "t1", false, true},
		{"c1", "t2", false, true},
	} {
		recorded, err := s.CheckLogIdentity(ctx, tc.cluster, tc.topic, nil)
		if recorded != tc.recorded || errors.Is(err, storage.ErrOtherLog) != tc.other || (err != nil && !tc.other) {
			t.Fatalf("CheckLogIdentity(%s, %s) = %v, %v; want recorded %v, other log %v", tc.cluster, tc.topic, recorded, err, tc.recorded, tc.other)
		}
	}
}

// TestCheckLogIdentityRefusesAShorterLog: a database without a recorded
// identity (an upgrade) that has applied a partition beyond the log's end
// does not take that log as its own.
func TestCheckLogIdentityRefusesAShorterLog(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	epoch, _, err := s.Acquire(ctx, 0, "n")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx, &storage.Batch{Marks: []storage.PartitionMark{{Partition: 0, Epoch: epoch, NextOffset: 10}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckLogIdentity(ctx, "c", "t", map[int32]int64{0: 5}); !errors.Is(err, storage.ErrOtherLog) {
		t.Fatalf("a log ending at 5 for a database at 10: %v, want ErrOtherLog", err)
	}
	if recorded, err := s.CheckLogIdentity(ctx, "c", "t", map[int32]int64{0: 10}); err != nil || !recorded {
		t.Fatalf("the log the database was built from: %v, %v", recorded, err)
	}
}

// TestReadsShowFinalLegStatus: transfer legs are written once, the debit
// as pending; a point read and a history page show each leg's final
// status, without rewriting the row.
func TestReadsShowFinalLegStatus(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	epoch, _, err := s.Acquire(ctx, 0, "n1")
	if err != nil {
		t.Fatal(err)
	}
	src, dst, eur := uuid.New(), uuid.New(), uuid.New()
	now := time.Now().UnixMicro()
	accts := map[uuid.UUID]*ledger.Account{}
	openEUR := cmd(ledger.KindOpen, eur, 0, "", now)
	openEUR.Currency = "EUR"
	cmds := []ledger.Command{
		cmd(ledger.KindOpen, src, 0, "", now), cmd(ledger.KindOpen, dst, 0, "", now), openEUR,
		cmd(ledger.KindCredit, src, 1000, "", now+1),
	}
	// done completes; refused is refused by the EUR account and refunded;
	// inflight has only its debit recorded; refusing has its refusal
	// recorded but not its refund yet.
	transfer := func(to uuid.UUID, ts int64) ledger.Command {
		c := cmd(ledger.KindTransferDebit, src, 10, "", ts)
		c.Counterparty = to
		return c
	}
	done, refused, inflight, refusing := transfer(dst, now+2), transfer(eur, now+3), transfer(dst, now+4), transfer(eur, now+5)
	cmds = append(cmds, done, refused, inflight, refusing)
	var rows []storage.TxRow
	apply := func(c ledger.Command) *ledger.Command {
		a := accts[c.AccountID]
		if a == nil {
			a = &ledger.Account{ID: c.AccountID}
			accts[c.AccountID] = a
		}
		e := ledger.Apply(a, &c)
		rows = append(rows, storage.TxRow{Cmd: &c, Result: e.Result, Offset: int64(len(rows))})
		return e.Emit
	}
	for _, c := range cmds {
		apply(c)
	}
	apply(*apply(*apply(refused))) // debit → refused credit → refund
	apply(*apply(done))            // the debits above replay: only new legs are rows
	apply(*apply(refusing))
	batch := &storage.Batch{Accounts: map[uuid.UUID]*ledger.Account{}}
	for _, r := range rows {
		if !r.Result.Replayed && !r.Result.Unrecorded {
			batch.Rows = append(batch.Rows, r)
		}
	}
	for id, a := range accts {
		snap := *a
		snap.Keys = ledger.KeyIndex{}
		batch.Accounts[id] = &snap
	}
	batch.Marks = []storage.PartitionMark{{Partition: 0, Epoch: epoch, NextOffset: int64(len(rows))}}
	if err := s.Flush(ctx, batch); err != nil {
		t.Fatal(err)
	}

	want := map[uuid.UUID]map[ledger.Kind]ledger.TxStatus{
		done.TxID:     {ledger.KindTransferDebit: ledger.StatusCompleted, ledger.KindTransferCredit: ledger.StatusCompleted},
		refused.TxID:  {ledger.KindTransferDebit: ledger.StatusRefunded, ledger.KindTransferCredit: ledger.StatusFailed, ledger.KindTransferRefund: ledger.StatusRefunded},
		inflight.TxID: {ledger.KindTransferDebit: ledger.StatusPending},
		refusing.TxID: {ledger.KindTransferDebit: ledger.StatusRefunded, ledger.KindTransferCredit: ledger.StatusFailed},
	}
	names := map[uuid.UUID]string{done.TxID: "completed", refused.TxID: "refunded", inflight.TxID: "in flight", refusing.TxID: "refused, refund not recorded"}
	for id, legs := range want {
		recs, err := s.Transaction(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got := map[ledger.Kind]ledger.TxStatus{}
		for _, r := range recs {
			got[r.Kind] = r.Status
		}
		if !maps.Equal(got, legs) {
			t.Errorf("%s: legs %v, want %v", names[id], got, legs)
		}
	}
	hist, err := s.History(ctx, src, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	debits := 0
	for _, r := range hist {
		if r.Kind == ledger.KindTransferDebit {
			debits++
			if w := want[r.TxID][r.Kind]; r.Status != w {
				t.Errorf("history: %s debit %v, want %v", names[r.TxID], r.Status, w)
			}
		}
	}
	if debits != 4 {
		t.Fatalf("history holds %d debit legs, want 4", debits)
	}
	// The stored rows are untouched: the audit counts pending debits
	// against settled legs.
	var pending int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM transactions WHERE kind = 'transfer_debit' AND status = 'pending'`).Scan(&pending); err != nil || pending != 4 {
		t.Fatalf("stored pending debits = %d %v, want 4", pending, err)
	}
}

// TestSlotMaps: the first start stores version 0 and later starts read
// it back; a map is stored only as the successor of the newest one; the
// newest one is read back slot for slot.
func TestSlotMaps(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if _, err := s.SlotMap(ctx); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("slot map of a new database: %v", err)
	}
	m0, err := s.InitSlotMap(ctx, 8)
	if err != nil || m0.Version != 0 || m0.Partitions != 8 {
		t.Fatalf("init: %+v %v", m0, err)
	}
	if again, err := s.InitSlotMap(ctx, 64); err != nil || again.Partitions != 8 {
		t.Fatalf("a second init with another count: %+v %v; want the stored map", again, err)
	}
	m1, _ := m0.Scale(16)
	m2, _ := m1.MoveSlot(5, 15)
	if err := s.AddSlotMap(ctx, m2); !errors.Is(err, storage.ErrSlotMapConflict) {
		t.Fatalf("skipping a version: %v", err)
	}
	if err := s.AddSlotMap(ctx, m1); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSlotMap(ctx, m1); !errors.Is(err, storage.ErrSlotMapConflict) {
		t.Fatalf("storing a version twice: %v", err)
	}
	if err := s.AddSlotMap(ctx, m2); err != nil {
		t.Fatal(err)
	}
	got, err := s.SlotMap(ctx)
	if err != nil || got.Version != 2 || got.Partitions != 16 {
		t.Fatalf("newest: %+v %v", got, err)
	}
	for slot := range ledger.SlotCount {
		if got.PartitionOf(slot) != m2.PartitionOf(slot) {
			t.Fatalf("slot %d on %d, want %d", slot, got.PartitionOf(slot), m2.PartitionOf(slot))
		}
	}
}
