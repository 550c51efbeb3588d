package kafkalog

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security is how the Kafka clients reach a broker that wants TLS and
// SASL (a managed Kafka: MSK, Confluent Cloud, Redpanda Cloud). The zero
// value is plaintext without authentication.
type Security struct {
	// TLS dials the brokers over TLS, checking them against the system's
	// roots, or CAFile's when set. CertFile and KeyFile, when set, present
	// a client certificate (mutual TLS).
	TLS                       bool
	CAFile, CertFile, KeyFile string
	// SASLMechanism is "" (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512,
	// with SASLUser and SASLPassword.
	SASLMechanism, SASLUser, SASLPassword string
}

// Enabled reports whether s asks for TLS or SASL.
func (s Security) Enabled() bool {
	return s.TLS || s.CAFile != "" || s.CertFile != "" || s.SASLMechanism != ""
}

// Options returns the kgo options of s, or why s cannot be used (a file
// that does not load, an unknown mechanism, SASL without credentials).
// PLAIN sends the password as it is: it is refused without TLS.
func (s Security) Options() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" {
		s.TLS = true
	}
	if s.TLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CAFile != "" {
			pem, err := os.ReadFile(s.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka TLS CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka TLS CA %s: no PEM certificate in it", s.CAFile)
			}
			cfg.RootCAs = pool
		}
		if (s.CertFile == "") != (s.KeyFile == "") {
			return nil, errors.New("kafka TLS: a client certificate needs both its certificate and its key")
		}
		if s.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka TLS client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s.SASLMechanism == "" {
		if s.SASLUser != "" || s.SASLPassword != "" {
			return nil, errors.New("kafka SASL: a user or password without a mechanism")
		}
		return opts, nil
	}
	if s.SASLUser == "" || s.SASLPassword == "" {
		return nil, fmt.Errorf("kafka SASL %s: a user and a password are required", s.SASLMechanism)
	}
	var m sasl.Mechanism
	switch s.SASLMechanism {
	case "PLAIN":
		if !s.TLS {
			return nil, errors.New("kafka SASL PLAIN sends the password in the clear: it needs TLS")
		}
		m = plain.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsMechanism()
	case "SCRAM-SHA-256":
		m = scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		m = scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("kafka SASL mechanism %q: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	return append(opts, kgo.SASL(m)), nil
}
