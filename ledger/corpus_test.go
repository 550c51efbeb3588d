package ledger

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// seedFiles returns the committed seed corpus of the fuzz targets, by
// file path. `go test` runs every file under testdata/fuzz/<Target> as a
// test case; `go test -fuzz` starts from them.
func seedFiles() map[string]string {
	files := map[string]string{}
	names := []string{"open", "credit", "debit", "transfer-debit", "transfer-credit", "transfer-refund", "zero-credit", "long-description", "created-by", "owner", "owner-created-by"}
	for i, rec := range fuzzCommandSeeds() {
		files[filepath.Join("testdata", "fuzz", "FuzzDecodeCommand", "seed-"+names[i])] =
			fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", rec)
	}
	// Regression: a length prefix with a redundant 0x80 0x00 encoding once
	// decoded, so the record did not re-encode to its own bytes.
	c := filledCommand(KindCredit)
	c.ReplyNode = ""
	rec := c.AppendBinary(nil)
	rec = append(rec[:len(rec)-1], 0x80, 0x00)
	files[filepath.Join("testdata", "fuzz", "FuzzDecodeCommand", "regress-noncanonical-length")] =
		fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", rec)

	for i, s := range []struct {
		text string
		exp  uint8
	}{
		{"12.34", 2}, {"1.230", 2}, {"0.05", 2}, {"9999999999999.99", 2}, {"10000000000000", 2},
		{"999999999999.999", 3}, {"007.50", 0}, {"1e2", 2}, {"1..2", 3}, {"-1", 0},
		// Canonical form: a leading zero, or a zero past the exponent, is refused;
		// fewer decimals than the exponent are not.
		{"0.010", 2}, {"00001.00", 2}, {"007", 0}, {"1.0", 0}, {"1.0", 2}, {"1.00", 2}, {"0.5", 2},
	} {
		files[filepath.Join("testdata", "fuzz", "FuzzParseAmount", fmt.Sprintf("seed-%02d", i))] =
			fmt.Sprintf("go test fuzz v1\nstring(%q)\nuint8(%d)\n", s.text, s.exp)
	}
	return files
}

// TestFuzzSeedCorpus keeps the committed seed corpus in step with the
// record encoding. Regenerate with -update.
func TestFuzzSeedCorpus(t *testing.T) {
	for path, want := range seedFiles() {
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run with -update to create it)", err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s is stale; run with -update", path)
		}
	}
}
