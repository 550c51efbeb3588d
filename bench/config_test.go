package bench

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if c.Target != "http://127.0.0.1:8080" || c.Workload != WorkloadCreditDebit || c.Accounts != 1000 ||
		c.Concurrency != 64 || c.Partitions != 64 || c.Label != "bursar" || c.Rate != 0 || c.Duration != 10*time.Second || c.Currency != "USD" ||
		c.fundingUnit != 100_000 || c.exponent != 2 || len(c.RunID) != 10 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"ok", func(*Config) {}, ""},
		{"trailing slash", func(c *Config) { c.Target = "http://h:1/" }, ""},
		{"no scheme", func(c *Config) { c.Target = "127.0.0.1:8080" }, "base URL"},
		{"ftp", func(c *Config) { c.Target = "ftp://h" }, "base URL"},
		{"accounts", func(c *Config) { c.Accounts = -1 }, "accounts"},
		{"concurrency", func(c *Config) { c.Concurrency = ConcurrencyMax + 1 }, "concurrency"},
		{"rate", func(c *Config) { c.Rate = -1 }, "rate"},
		{"duration", func(c *Config) { c.Duration = time.Millisecond }, "duration"},
		{"long", func(c *Config) { c.Duration = 2 * time.Hour }, "duration"},
		{"warmup", func(c *Config) { c.Warmup = -time.Second }, "warmup"},
		{"currency", func(c *Config) { c.Currency = "usd" }, "currency"},
		{"funding", func(c *Config) { c.Funding = "1.234" }, "funding"},
		{"no funding", func(c *Config) { c.Funding = "0.00" }, ""},
		{"run id", func(c *Config) { c.RunID = "a b" }, "run ID"},
		{"workload", func(c *Config) { c.Workload = "nope" }, "unknown workload"},
		{"hot", func(c *Config) { c.Workload = WorkloadHot }, ""},
		{"partitions", func(c *Config) { c.Partitions = PartitionsMax + 1 }, "partitions"},
		{"same partition impossible", func(c *Config) {
			c.Workload, c.Accounts, c.Partitions = WorkloadSamePartition, 2, PartitionsMax
		}, "two accounts in one partition"},
		{"label", func(c *Config) { c.Label = "a/b" }, "label"},
	} {
		cfg := Config{}
		if err := cfg.setDefaults(); err != nil {
			t.Fatal(err)
		}
		c.mod(&cfg)
		err := cfg.validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

func TestParseFunding(t *testing.T) {
	for _, c := range []struct {
		text string
		exp  int
		want int64
		bad  bool
	}{
		{"1000", 2, 100_000, false},
		{"1000.00", 2, 100_000, false},
		{"0", 2, 0, false},
		{"0.00", 2, 0, false},
		{"12.5", 0, 0, true},
		{"", 2, 0, true},
		{"-5", 2, 0, true},
		{"abc", 2, 0, true},
		{".", 2, 0, true}, // malformed zeros are refused, as by the API
		{"0.", 2, 0, true},
		{"0.0.0", 2, 0, true},
	} {
		got, err := parseFunding(c.text, c.exp)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("parseFunding(%q, %d) = %d, %v", c.text, c.exp, got, err)
		}
	}
}
