package ledger

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden and the fuzz seed corpus")

// appendEffect is a deterministic binary encoding of an effect: every
// Result field in a fixed order, Changed, then the emitted record in its
// log encoding. Two runs agree byte for byte iff their effects are equal.
func appendEffect(dst []byte, e *Effect) []byte {
	r := &e.Result
	dst = append(dst, r.TxID[:]...)
	dst = append(dst, byte(r.Kind))
	dst = append(dst, r.AccountID[:]...)
	dst = append(dst, byte(r.Status))
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Code))
	for _, v := range [...]int64{r.Amount, r.Delta, r.Balance, r.Available, r.Version, r.Seq, r.TimestampUs} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Currency)))
	dst = append(dst, r.Currency...)
	var flags byte
	for i, b := range [...]bool{r.Replayed, r.Unrecorded, e.Changed, e.Emit != nil} {
		if b {
			flags |= 1 << i
		}
	}
	dst = append(dst, flags)
	if e.Emit != nil {
		rec := e.Emit.AppendBinary(nil)
		dst = binary.AppendUvarint(dst, uint64(len(rec)))
		dst = append(dst, rec...)
	}
	return dst
}

// replayLog applies log to the accounts in w, in order, and returns the
// encoding of each effect.
func replayLog(w world, log []Command) [][]byte {
	out := make([][]byte, len(log))
	for i := range log {
		e := w.apply(log[i])
		out[i] = appendEffect(nil, &e)
	}
	return out
}

// genLog builds a random command log the way the engine would: client
// commands arrive, each record is applied as it is appended, and emitted
// records (credit legs, refunds) are appended later, in random order,
// sometimes twice (a replayed source partition re-emits them).
func genLog(seed uint64, n int) []Command {
	d := newModelDriver(nil, seed) // only its command generator
	rng := rand.New(rand.NewPCG(seed, 0x6c6f67))
	w := world{}
	var log, outbox []Command
	appendRec := func(c Command) {
		log = append(log, c)
		d.ref.apply(c) // keeps the generator's view of currencies current
		if e := w.apply(c); e.Emit != nil {
			outbox = append(outbox, *e.Emit)
		}
	}
	for len(log) < n {
		d.nowUs += 1 + rng.Int64N(1_000_000)
		if rng.IntN(200) == 0 {
			d.nowUs += IdempotencyWindowUs
		}
		switch r := rng.IntN(100); {
		case r < 30 && len(outbox) > 0:
			i := rng.IntN(len(outbox))
			c := outbox[i]
			if rng.IntN(100) >= 20 { // else leave it there to be appended again
				outbox = append(outbox[:i], outbox[i+1:]...)
			}
			appendRec(c)
		case r < 36 && len(d.sent) > 0:
			c := d.sent[rng.IntN(len(d.sent))]
			d.txSeq++
			c.TxID, c.TimestampUs = txid(seed<<32|d.txSeq), d.nowUs
			appendRec(c)
		default:
			c := d.newCommand()
			d.sent = append(d.sent, c)
			appendRec(c)
		}
	}
	for len(outbox) > 0 {
		c := outbox[0]
		outbox = outbox[1:]
		appendRec(c)
	}
	return log
}

// cloneKeyIndex deep-copies an index, as a snapshot would.
func cloneKeyIndex(k KeyIndex) KeyIndex {
	c := k
	c.idx = maps.Clone(k.idx)
	c.ring = slices.Clone(k.ring)
	return c
}

func cloneWorld(w world) world {
	c := world{}
	for id, a := range w {
		cp := *a
		cp.Keys = cloneKeyIndex(a.Keys)
		c[id] = &cp
	}
	return c
}

func TestReplayIsDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		log := genLog(seed, 2000)

		first := replayLog(world{}, log)
		second := replayLog(world{}, log)
		for i := range first {
			if !bytes.Equal(first[i], second[i]) {
				t.Fatalf("seed %d: record %d (%v) differs between two replays from zero", seed, i, log[i].Kind)
			}
		}

		// Every record a replay emits is in the log: the log is closed
		// under apply, as the engine's Kafka outputs are.
		inLog := map[string]bool{}
		for i := range log {
			inLog[string(log[i].AppendBinary(nil))] = true
		}
		final := world{}
		recorded := make([]bool, len(log))
		for i := range log {
			e := final.apply(log[i])
			recorded[i] = !e.Result.Unrecorded
			if e.Emit != nil && !inLog[string(e.Emit.AppendBinary(nil))] {
				t.Fatalf("seed %d: record %d emitted %+v, which is not in the log", seed, i, *e.Emit)
			}
		}

		// Restart from a snapshot at a random offset: copy the accounts
		// (keys included), replay the rest, and get the same bytes as the
		// uninterrupted run. Also rebuild the prefix from zero, as an
		// owner without a snapshot would.
		rng := rand.New(rand.NewPCG(seed, 99))
		for range 5 {
			k := rng.IntN(len(log) + 1)
			w := world{}
			replayLog(w, log[:k])
			snap := cloneWorld(w)
			fromSnap := replayLog(snap, log[k:])
			fromPrefix := replayLog(w, log[k:]) // the original, after the clone ran: no aliasing
			for i := range fromSnap {
				if !bytes.Equal(fromSnap[i], first[k+i]) {
					t.Fatalf("seed %d: snapshot at %d: record %d (%v) differs from the uninterrupted run", seed, k, k+i, log[k+i].Kind)
				}
				if !bytes.Equal(fromPrefix[i], first[k+i]) {
					t.Fatalf("seed %d: prefix of %d replayed: record %d (%v) differs from the uninterrupted run", seed, k, k+i, log[k+i].Kind)
				}
			}
		}

		// Re-applying every recorded leg of the log to the final state, as
		// a replayed source partition would (rule 4), changes nothing.
		// (A leg refused without a row, because its account did not
		// exist, leaves nothing to recognize it by; it is left out.)
		replays := 0
		for i := range log {
			c := log[i]
			if (c.Kind != KindTransferCredit && c.Kind != KindTransferRefund) || !recorded[i] {
				continue
			}
			a := final.get(c.AccountID)
			before, keys := scalars(a), a.Keys.Len()
			e := Apply(a, &c)
			if !e.Result.Replayed || e.Changed || e.Emit != nil || scalars(a) != before || a.Keys.Len() != keys {
				t.Fatalf("seed %d: re-applying leg %d (%v) was not a no-op: %+v", seed, i, c.Kind, e.Result)
			}
			replays++
		}
		if replays == 0 {
			t.Fatalf("seed %d: the log has no recorded legs", seed)
		}
	}
}

// Golden tests: testdata/golden/*.log are small scripts of commands; the
// results are in the .golden file next to each. Regenerate with
//
//	go test ./ledger -run TestGolden -update
//
// and review the diff: a change in a .golden file is a change in what the
// ledger decides.
func TestGolden(t *testing.T) {
	logs, err := filepath.Glob(filepath.Join("testdata", "golden", "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no golden logs: %v", err)
	}
	for _, path := range logs {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := runScript(t, string(src))
			goldenPath := strings.TrimSuffix(path, ".log") + ".golden"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s; run with -update and review the diff.\ngot:\n%s", path, goldenPath, got)
			}
			// A second run of the same script is byte-identical.
			if again := runScript(t, string(src)); !bytes.Equal(again, got) {
				t.Error("two runs of the same script differ")
			}
		})
	}
}

// script runs a golden log. Each line is one of
//
//	<kind> acct=NAME [to=NAME] [amount=DEC | units=INT] [cur=XXX]
//	       [overdraft=DEC] [key=K] [tx=N] [at=SECONDS] [desc=TEXT]
//	deliver      apply the oldest emitted record not yet delivered
//	redeliver    apply the last delivered record again
//	status acct=NAME to=active|frozen|closed
//	balances     print every account
//
// Accounts are named; their IDs are derived from the names. Times are
// seconds after t0.
type script struct {
	t         *testing.T
	w         world
	names     map[uuid.UUID]string
	outbox    []Command
	delivered *Command
	out       bytes.Buffer
	n         int
}

var scriptNS = uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")

func (s *script) id(name string) uuid.UUID {
	id := uuid.NewSHA1(scriptNS, []byte(name))
	s.names[id] = name
	return id
}

func (s *script) name(id uuid.UUID) string {
	if n, ok := s.names[id]; ok {
		return n
	}
	return id.String()
}

func exponentOf(cur string) int {
	if e, ok := CurrencyExponent(cur); ok {
		return e
	}
	return 2
}

func (s *script) amount(text, cur string) string {
	return FormatAmount(mustUnits(s.t, text, cur), exponentOf(cur))
}

func mustUnits(t *testing.T, text, cur string) int64 {
	u, err := ParseAmount([]byte(text), exponentOf(cur))
	if err != nil {
		t.Fatalf("amount %q: %v", text, err)
	}
	return u
}

func runScript(t *testing.T, src string) []byte {
	s := &script{t: t, w: world{}, names: map[uuid.UUID]string{}}
	sc := bufio.NewScanner(strings.NewReader(src))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if i := strings.Index(text, "#"); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		fields := strings.Fields(text)
		args := map[string]string{}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("line %d: %q is not key=value", line, f)
			}
			args[k] = v
		}
		switch fields[0] {
		case "deliver":
			if len(s.outbox) == 0 {
				t.Fatalf("line %d: nothing to deliver", line)
			}
			c := s.outbox[0]
			s.outbox = s.outbox[1:]
			s.delivered = &c
			s.apply(c)
		case "redeliver":
			if s.delivered == nil {
				t.Fatalf("line %d: nothing delivered yet", line)
			}
			s.apply(*s.delivered)
		case "status":
			st := ParseAccountStatus(args["to"])
			if st == 0 {
				t.Fatalf("line %d: bad status %q", line, args["to"])
			}
			s.w.get(s.id(args["acct"])).Status = st
			fmt.Fprintf(&s.out, "-- %s is %s\n", args["acct"], st)
		case "balances":
			s.balances()
		default:
			kind := ParseKind(fields[0])
			if kind == KindInvalid {
				t.Fatalf("line %d: unknown kind %q", line, fields[0])
			}
			s.apply(s.command(line, kind, args))
		}
	}
	if len(s.outbox) > 0 {
		fmt.Fprintf(&s.out, "-- %d emitted records not delivered\n", len(s.outbox))
	}
	s.balances()
	return s.out.Bytes()
}

func (s *script) command(line int, kind Kind, args map[string]string) Command {
	t := s.t
	c := Command{Kind: kind, AccountID: s.id(args["acct"]), TimestampUs: t0, Currency: "USD"}
	if v, ok := args["cur"]; ok {
		c.Currency = v
	}
	for k, v := range args {
		switch k {
		case "acct", "cur":
		case "to":
			c.Counterparty = s.id(v)
		case "amount":
			c.Amount = mustUnits(t, v, c.Currency)
		case "units":
			u, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("line %d: units %q: %v", line, v, err)
			}
			c.Amount = u
		case "overdraft":
			c.OverdraftLimit = mustUnits(t, v, c.Currency)
		case "key":
			c.IdemKey = v
		case "desc":
			c.Description = v
		case "tx":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				t.Fatalf("line %d: tx %q: %v", line, v, err)
			}
			c.TxID = txid(n)
		case "at":
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("line %d: at %q: %v", line, v, err)
			}
			c.TimestampUs = t0 + sec*1_000_000
		default:
			t.Fatalf("line %d: unknown argument %q", line, k)
		}
	}
	if kind == KindOpen {
		c.CustomerID, c.AccountType = "cust-"+args["acct"], "checking"
	}
	c.RequestHash = HashRequest(&c)
	return c
}

// apply runs c and prints it and its effect on one line each.
func (s *script) apply(c Command) {
	s.n++
	e := s.w.apply(c)
	exp := exponentOf(c.Currency)
	fmt.Fprintf(&s.out, "%03d %s %s", s.n, c.Kind, s.name(c.AccountID))
	if c.Counterparty != uuid.Nil {
		fmt.Fprintf(&s.out, " peer=%s", s.name(c.Counterparty))
	}
	fmt.Fprintf(&s.out, " %s %s tx=%d t=%d", FormatAmount(c.Amount, exp), c.Currency,
		binary.BigEndian.Uint64(c.TxID[8:])&^(1<<63), (c.TimestampUs-t0)/1_000_000)
	if c.IdemKey != "" {
		fmt.Fprintf(&s.out, " key=%s", c.IdemKey)
	}
	if c.FailCode != OK {
		fmt.Fprintf(&s.out, " fail=%s", c.FailCode)
	}
	r := &e.Result
	fmt.Fprintf(&s.out, "\n    => %s %s delta=%s balance=%s available=%s version=%d seq=%d",
		r.Status, r.Code, FormatAmount(r.Delta, exp), FormatAmount(r.Balance, exp),
		FormatAmount(r.Available, exp), r.Version, r.Seq)
	for _, f := range []struct {
		on   bool
		name string
	}{{r.Replayed, "replayed"}, {r.Unrecorded, "unrecorded"}, {e.Changed, "changed"}} {
		if f.on {
			fmt.Fprintf(&s.out, " %s", f.name)
		}
	}
	if e.Emit != nil {
		fmt.Fprintf(&s.out, " emit=%s:%s", e.Emit.Kind, s.name(e.Emit.AccountID))
		s.outbox = append(s.outbox, *e.Emit)
	}
	s.out.WriteByte('\n')
}

func (s *script) balances() {
	var names []string
	byName := map[string]*Account{}
	for id, a := range s.w {
		n := s.name(id)
		names = append(names, n)
		byName[n] = a
	}
	slices.Sort(names)
	s.out.WriteString("-- accounts\n")
	for _, n := range names {
		a := byName[n]
		if !a.Exists {
			fmt.Fprintf(&s.out, "   %s: none\n", n)
			continue
		}
		fmt.Fprintf(&s.out, "   %s: %s %s %s overdraft=%s version=%d seq=%d keys=%d\n", n, a.Status, a.Currency,
			FormatAmount(a.Balance, exponentOf(a.Currency)), FormatAmount(a.OverdraftLimit, exponentOf(a.Currency)),
			a.Version, a.Seq, a.Keys.Len())
	}
}
