package ledger

import (
	"testing"

	"github.com/google/uuid"
)

func TestWireRoundTrip(t *testing.T) {
	r := Result{
		TxID: uuid.New(), Kind: KindTransferCredit, AccountID: uuid.New(), Status: StatusFailed,
		Code: CodeCurrencyMismatch, Amount: 1234, Delta: -5, Currency: "USD", Balance: -77, Available: 23,
		Version: 9, Seq: 11, TimestampUs: 1_700_000_000_000_001, Replayed: true, Tombstone: true,
	}
	got, err := DecodeResult(AppendResult(nil, &r))
	if err != nil || got != r {
		t.Fatalf("result round trip: %v\n got %+v\nwant %+v", err, got, r)
	}
	a := Account{ID: uuid.New(), Exists: true, CustomerID: "cust-é", Type: "savings", Currency: "JPY",
		Status: AccountFrozen, OverdraftLimit: 5, Balance: -5, Version: 3, Seq: 4, CreatedUs: 1, UpdatedUs: 2}
	gotA, err := DecodeAccount(AppendAccount(nil, &a))
	if err != nil || !sameAccount(gotA, a) {
		t.Fatalf("account round trip: %v\n got %+v\nwant %+v", err, gotA, a)
	}
	// Every truncation and a trailing byte are refused.
	for _, enc := range [][]byte{AppendResult(nil, &r), AppendAccount(nil, &a)} {
		for n := 0; n < len(enc); n++ {
			if _, err := DecodeResult(enc[:n]); err == nil && len(enc) == len(AppendResult(nil, &r)) {
				t.Fatalf("truncated result (%d bytes) decoded", n)
			}
			if _, err := DecodeAccount(enc[:n]); err == nil && len(enc) == len(AppendAccount(nil, &a)) {
				t.Fatalf("truncated account (%d bytes) decoded", n)
			}
		}
	}
	if _, err := DecodeResult(append(AppendResult(nil, &r), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func FuzzDecodeWire(f *testing.F) {
	r := Result{TxID: uuid.New(), Currency: "EUR", Kind: KindCredit, Status: StatusCompleted}
	a := Account{ID: uuid.New(), Exists: true, Currency: "EUR", CustomerID: "c", Type: "t"}
	f.Add(AppendResult(nil, &r))
	f.Add(AppendAccount(nil, &a))
	a.Owner = "0190f1a2-0000-7000-8000-0000000000cc"
	f.Add(AppendAccount(nil, &a))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeResult(b); err == nil {
			if again, err := DecodeResult(AppendResult(nil, &r)); err != nil || again != r {
				t.Fatalf("result re-encode: %v", err)
			}
		}
		if a, err := DecodeAccount(b); err == nil {
			if again, err := DecodeAccount(AppendAccount(nil, &a)); err != nil || !sameAccount(again, a) {
				t.Fatalf("account re-encode: %v", err)
			}
		}
	})
}

// sameAccount compares the state fields the wire carries.
func sameAccount(x, y Account) bool {
	x.Keys, y.Keys = KeyIndex{}, KeyIndex{}
	return x.ID == y.ID && x.Exists == y.Exists && x.CustomerID == y.CustomerID && x.Type == y.Type &&
		x.Currency == y.Currency && x.Status == y.Status && x.OverdraftLimit == y.OverdraftLimit &&
		x.Balance == y.Balance && x.Version == y.Version && x.Seq == y.Seq && x.CreatedUs == y.CreatedUs &&
		x.UpdatedUs == y.UpdatedUs && x.Owner == y.Owner
}

// TestWireAccountOwner: an account with an owner is encoded as version 2
// ending in it; one without is the version-1 encoding older nodes read;
// a version 2 with an empty owner is refused (one encoding per account).
func TestWireAccountOwner(t *testing.T) {
	a := Account{ID: uuid.New(), Exists: true, Currency: "USD", Status: AccountActive, Version: 1, Seq: 1}
	v1 := AppendAccount(nil, &a)
	a.Owner = "0190f1a2-0000-7000-8000-0000000000cc"
	v2 := AppendAccount(nil, &a)
	if v1[0] != 1 || v2[0] != 2 || len(v2) != len(v1)+1+len(a.Owner) {
		t.Fatalf("encodings:\n v1 %x\n v2 %x", v1, v2)
	}
	got, err := DecodeAccount(v2)
	if err != nil || !sameAccount(got, a) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	for n := range len(v2) {
		if _, err := DecodeAccount(v2[:n]); err == nil {
			t.Fatalf("truncated at %d decoded", n)
		}
	}
	empty := append(append([]byte{2}, v1[1:]...), 0)
	if _, err := DecodeAccount(empty); err == nil {
		t.Fatal("version 2 with an empty owner decoded")
	}
}
