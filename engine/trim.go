package engine

import (
	"context"
	"time"

	"github.com/bursar/bursar/kafkalog"
	"github.com/twmb/franz-go/pkg/kadm"
)

// trimLoop deletes old committed commands from bursar.commands, every
// TrimInterval, so the log (and the embedded broker's disk and index) stays
// bounded. It only runs with CommandsRetention > 0.
func (e *Engine) trimLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.TrimInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			e.trim(e.ctx, now)
		}
	}
}

// trim deletes, in every owned partition, the commands that are both older
// than CommandsRetention and before the last offset PostgreSQL has
// committed.
// The second bound is what makes it safe (rule 3): recovery and a new owner
// start at the committed offset, so nothing before it is read again, while
// anything after it may still be needed however old it is (PostgreSQL was
// down, say). A failure is counted and logged, and the next round tries
// again.
func (e *Engine) trim(ctx context.Context, now time.Time) {
	stats := e.Stats()
	if len(stats) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.TrimInterval)
	defer cancel()
	adm := kadm.NewClient(e.client)
	starts, err := adm.ListStartOffsets(ctx, kafkalog.TopicCommands)
	if err == nil {
		err = starts.Error()
	}
	var aged kadm.ListedOffsets
	if err == nil {
		aged, err = adm.ListOffsetsAfterMilli(ctx, now.Add(-e.cfg.CommandsRetention).UnixMilli(), kafkalog.TopicCommands)
	}
	if err == nil {
		err = aged.Error()
	}
	if err != nil {
		e.m.trimErrors.Inc()
		e.log.Warn("trimming bursar.commands: listing offsets failed", "err", err)
		return
	}
	to := kadm.Offsets{}
	for _, s := range stats {
		o, ok := aged.Lookup(kafkalog.TopicCommands, s.Partition)
		start, sok := starts.Lookup(kafkalog.TopicCommands, s.Partition)
		if !ok || !sok {
			continue
		}
		// One committed record always stays: a broker that lost every
		// segment of a partition (kfake rebuilds a partition from its
		// files at start) would begin it again at offset 0, under the
		// offset PostgreSQL has committed.
		if at := min(o.Offset, s.Committed-1); at > start.Offset {
			to.AddOffset(kafkalog.TopicCommands, s.Partition, at, -1)
		}
	}
	if len(to) == 0 {
		return
	}
	resp, err := adm.DeleteRecords(ctx, to)
	if err != nil {
		e.m.trimErrors.Inc()
		e.log.Warn("trimming bursar.commands failed", "err", err)
		return
	}
	resp.Each(func(r kadm.DeleteRecordsResponse) {
		if r.Err != nil {
			e.m.trimErrors.Inc()
			e.log.Warn("trimming bursar.commands failed", "partition", r.Partition, "err", r.Err)
			return
		}
		if start, ok := starts.Lookup(kafkalog.TopicCommands, r.Partition); ok && r.LowWatermark > start.Offset {
			e.m.trimmed.Add(float64(r.LowWatermark - start.Offset))
		}
	})
}
