package ledger

import (
	"encoding/binary"
	"errors"
	"hash/fnv"

	"github.com/google/uuid"
)

// Kind is what a command does to its one account. Values are stored in Kafka
// records and PostgreSQL; never renumber them.
type Kind uint8

const (
	KindInvalid Kind = iota
	KindOpen
	KindCredit
	KindDebit
	KindTransferDebit  // debit leg of a transfer, in the source's partition
	KindTransferCredit // credit leg, emitted by the debit leg
	KindTransferRefund // refund to the source when the credit leg is refused
	kindCount
)

var kindNames = [kindCount]string{"invalid", "open", "credit", "debit", "transfer_debit", "transfer_credit", "transfer_refund"}

func (k Kind) String() string {
	if k >= kindCount {
		return "invalid"
	}
	return kindNames[k]
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) Kind {
	for k := KindOpen; k < kindCount; k++ {
		if kindNames[k] == s {
			return k
		}
	}
	return KindInvalid
}

// Field length limits. They bound a record's size and every string the
// ledger stores.
const (
	CurrencyLen       = 3
	IdemKeyLenMax     = 128
	CustomerIDLenMax  = 128
	AccountTypeLenMax = 32
	DescriptionLenMax = 512
	ReferenceLenMax   = 128
	ReplyNodeLenMax   = 128
	CreatedByLenMax   = 64
	OwnerLenMax       = 64
)

// Command is one record of the bursar.commands log. It mutates exactly one
// account, AccountID. Everything an apply needs is in it: IDs and the
// timestamp are minted at ingress, so apply is a pure function.
type Command struct {
	Kind      Kind
	TxID      uuid.UUID // transaction ID; for transfer legs, the transfer's ID
	AccountID uuid.UUID
	// Counterparty is the other account of a transfer leg (zero otherwise).
	Counterparty uuid.UUID
	TimestampUs  int64 // unix microseconds, set at ingress
	Amount       int64 // minor units, > 0 for money commands
	Currency     string
	// RequestHash fingerprints the client's request so that a reused
	// idempotency key with a different request is detected. See HashRequest.
	RequestHash uint64
	IdemKey     string

	// Open only.
	CustomerID     string
	AccountType    string
	OverdraftLimit int64

	Description string
	ReferenceID string

	// Reply routing; not part of the ledger state. ReplyNode names the
	// ingress instance waiting for the answer (node ID and boot), ReplySeq its
	// request.
	ReplyNode string
	ReplySeq  uint64

	// FailCode carries the refusal reason on a refund leg.
	FailCode Code

	// CreatedBy is the principal that asked for the command ("apikey:" and
	// the key ID), set by the ingress from the credential, never from the
	// body; empty when the node runs without authentication. A transfer's
	// legs carry their debit's. It is not part of HashRequest: a retry
	// under another key is still the same request.
	CreatedBy string

	// Owner is the user who owns the account (a customer's user ID). On
	// an open it becomes the account's owner; on a debit or a transfer's
	// debit leg it is the owner the account must have, set by the ingress
	// from a customer's credential, never from the body: an account of
	// another owner (or none) is refused as ACCOUNT_NOT_FOUND, before any
	// idempotency lookup, so that a customer learns nothing of accounts
	// that are not theirs. Empty: no owner / no constraint. Legs and
	// refunds never carry it.
	Owner string
}

// Record versions: 1 has no CreatedBy; 2 appends it; 3 appends Owner
// after it (CreatedBy may then be empty). A command is written in the
// oldest version that holds it (3 with an Owner, else 2 with a
// CreatedBy, else 1), so that each command has one encoding and a record
// re-encodes to its own bytes.
const (
	commandVersion      = 1
	commandVersionBy    = 2
	commandVersionOwner = 3
	// RecordVersionMax is the newest version DecodeCommand reads. An
	// ingress writes a version only once every engine node reads it
	// (cluster.Membership.RecordVersion).
	RecordVersionMax = commandVersionOwner
)

// RecordVersion is the version AppendBinary writes for c.
func (c *Command) RecordVersion() int {
	switch {
	case c.Owner != "":
		return commandVersionOwner
	case c.CreatedBy != "":
		return commandVersionBy
	}
	return commandVersion
}

// Encoding errors.
var (
	ErrShortRecord   = errors.New("ledger: record truncated")
	ErrBadVersion    = errors.New("ledger: unknown record version")
	ErrBadKind       = errors.New("ledger: unknown command kind")
	ErrFieldTooLong  = errors.New("ledger: field longer than its limit")
	ErrTrailingBytes = errors.New("ledger: trailing bytes after record")
	ErrNonCanonical  = errors.New("ledger: length prefix not minimally encoded")
)

// AppendBinary appends the record encoding of c to dst. The format is a
// version byte followed by fixed-width fields and length-prefixed strings;
// it is stable across releases and decoded by DecodeCommand.
func (c *Command) AppendBinary(dst []byte) []byte {
	version := byte(c.RecordVersion())
	dst = append(dst, version, byte(c.Kind))
	dst = append(dst, c.TxID[:]...)
	dst = append(dst, c.AccountID[:]...)
	dst = append(dst, c.Counterparty[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.TimestampUs))
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.Amount))
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.OverdraftLimit))
	dst = binary.BigEndian.AppendUint64(dst, c.RequestHash)
	dst = binary.BigEndian.AppendUint64(dst, c.ReplySeq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(c.FailCode))
	for _, s := range [...]string{c.Currency, c.IdemKey, c.CustomerID, c.AccountType, c.Description, c.ReferenceID, c.ReplyNode} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	if version >= commandVersionBy {
		dst = binary.AppendUvarint(dst, uint64(len(c.CreatedBy)))
		dst = append(dst, c.CreatedBy...)
	}
	if version >= commandVersionOwner {
		dst = binary.AppendUvarint(dst, uint64(len(c.Owner)))
		dst = append(dst, c.Owner...)
	}
	return dst
}

const fixedLen = 2 + 16*3 + 8*5 + 2

// DecodeCommand decodes a record produced by AppendBinary. It validates
// lengths and the kind but not business rules; those are the apply's.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) < 1 {
		return c, ErrShortRecord
	}
	version := b[0]
	if version < commandVersion || version > commandVersionOwner {
		return c, ErrBadVersion
	}
	if len(b) < fixedLen {
		return c, ErrShortRecord
	}
	c.Kind = Kind(b[1])
	if c.Kind == KindInvalid || c.Kind >= kindCount {
		return c, ErrBadKind
	}
	p := 2
	copy(c.TxID[:], b[p:p+16])
	copy(c.AccountID[:], b[p+16:p+32])
	copy(c.Counterparty[:], b[p+32:p+48])
	p += 48
	u64 := func() uint64 { v := binary.BigEndian.Uint64(b[p:]); p += 8; return v }
	c.TimestampUs = int64(u64())
	c.Amount = int64(u64())
	c.OverdraftLimit = int64(u64())
	c.RequestHash = u64()
	c.ReplySeq = u64()
	c.FailCode = Code(binary.BigEndian.Uint16(b[p:]))
	p += 2
	limits := [...]int{CurrencyLen, IdemKeyLenMax, CustomerIDLenMax, AccountTypeLenMax, DescriptionLenMax, ReferenceLenMax, ReplyNodeLenMax, CreatedByLenMax, OwnerLenMax}
	all := [...]*string{&c.Currency, &c.IdemKey, &c.CustomerID, &c.AccountType, &c.Description, &c.ReferenceID, &c.ReplyNode, &c.CreatedBy, &c.Owner}
	// Version 1 ends before CreatedBy, version 2 before Owner.
	dsts := all[:len(all)-3+int(version)]
	for i, dst := range dsts {
		n, w := binary.Uvarint(b[p:])
		if w <= 0 {
			return c, ErrShortRecord
		}
		// A varint whose last byte is zero has a shorter encoding of the same
		// value. Refuse it so that a record has exactly one encoding and a
		// decoded command re-encodes to the bytes it came from.
		if w > 1 && b[p+w-1] == 0 {
			return c, ErrNonCanonical
		}
		p += w
		if n > uint64(limits[i]) {
			return c, ErrFieldTooLong
		}
		if uint64(len(b)-p) < n {
			return c, ErrShortRecord
		}
		*dst = string(b[p : p+int(n)])
		p += int(n)
	}
	if p != len(b) {
		return c, ErrTrailingBytes
	}
	if int(version) != c.RecordVersion() {
		return c, ErrNonCanonical // written in an older version
	}
	return c, nil
}

// HashRequest fingerprints what the client asked for: the kind, accounts,
// amount, currency and texts, but not the minted IDs, the timestamp or the
// reply route. Two retries of one request hash alike; a different request
// under the same idempotency key does not.
func HashRequest(c *Command) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	h.Write([]byte{byte(c.Kind)})
	h.Write(c.AccountID[:])
	h.Write(c.Counterparty[:])
	binary.BigEndian.PutUint64(buf[:], uint64(c.Amount))
	h.Write(buf[:])
	binary.BigEndian.PutUint64(buf[:], uint64(c.OverdraftLimit))
	h.Write(buf[:])
	for _, s := range [...]string{c.Currency, c.CustomerID, c.AccountType, c.Description, c.ReferenceID} {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	if c.Kind == KindOpen && c.Owner != "" {
		// An open's owner is what was asked for (the account's state);
		// a debit's comes from the credential, like CreatedBy, and is
		// left out. Hashed only when set, so that every hash of a
		// command without one is what it was before owners existed.
		h.Write([]byte{0xff})
		h.Write([]byte(c.Owner))
	}
	return h.Sum64()
}
