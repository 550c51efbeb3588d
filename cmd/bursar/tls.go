package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// certReloader serves the HTTP listeners' certificate (--tls-cert,
// --tls-key) and loads it again on SIGHUP, or when either file changes
// (looked at every certPollInterval): a renewed certificate is taken
// without a restart. A pair that does not load keeps the one in use, and
// is logged and counted.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	reloads           *prometheus.CounterVec

	cert    atomic.Pointer[tls.Certificate]
	modTime atomic.Int64 // the newer of the two files' mtimes at the last load
}

const certPollInterval = 10 * time.Second

func newCertReloader(certFile, keyFile string, log *slog.Logger, reg prometheus.Registerer) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bursar_tls_reloads_total", Help: "Loads of the HTTP certificate after the first (SIGHUP or a changed file), by result (ok, error: the certificate in use stays).",
		}, []string{"result"})}
	if err := r.load(); err != nil {
		return nil, err
	}
	reg.MustRegister(r.reloads)
	return r, nil
}

func (r *certReloader) load() error {
	mod := max(mtime(r.certFile), mtime(r.keyFile))
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	r.modTime.Store(mod)
	return nil
}

func mtime(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.ModTime().UnixNano()
}

// reload loads the pair again; the certificate in use stays on failure.
func (r *certReloader) reload(why string) {
	if err := r.load(); err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.log.Error("reloading the TLS certificate failed; the one in use stays", "why", why, "err", err)
		return
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.log.Info("TLS certificate reloaded", "why", why, "cert", r.certFile)
}

// run reloads on SIGHUP and on a changed file until ctx ends.
func (r *certReloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(certPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload("SIGHUP")
		case <-t.C:
			if max(mtime(r.certFile), mtime(r.keyFile)) != r.modTime.Load() {
				r.reload("a certificate file changed")
			}
		}
	}
}

// config is the listeners' TLS configuration: TLS 1.2 at least, the
// current certificate at each handshake.
func (r *certReloader) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}
