package ledger

import (
	"encoding/binary"
	"errors"
)

// Binary encodings of a Result and of an Account's state (without its key
// index), for answers and reads that cross nodes. Versioned like records.

// Version 2 of an account appends its Owner; an account without one is
// written as version 1, which nodes of older releases read.
const (
	wireVersion      = 1
	wireVersionOwner = 2
)

// ErrBadWire is returned for a malformed Result or Account encoding.
var ErrBadWire = errors.New("ledger: malformed wire message")

// AppendResult appends the encoding of r to dst.
func AppendResult(dst []byte, r *Result) []byte {
	var flags byte
	for i, f := range [...]bool{r.Replayed, r.Unrecorded, r.Tombstone} {
		if f {
			flags |= 1 << i
		}
	}
	dst = append(dst, wireVersion, byte(r.Kind), byte(r.Status), flags)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Code))
	dst = append(dst, r.TxID[:]...)
	dst = append(dst, r.AccountID[:]...)
	for _, v := range [...]int64{r.Amount, r.Delta, r.Balance, r.Available, r.Version, r.Seq, r.TimestampUs} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	return appendString(dst, r.Currency)
}

// DecodeResult decodes AppendResult's output.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	const fixed = 6 + 32 + 7*8
	if len(b) < fixed || b[0] != wireVersion {
		return r, ErrBadWire
	}
	r.Kind, r.Status = Kind(b[1]), TxStatus(b[2])
	flags := b[3]
	r.Replayed, r.Unrecorded, r.Tombstone = flags&1 != 0, flags&2 != 0, flags&4 != 0
	r.Code = Code(binary.BigEndian.Uint16(b[4:]))
	copy(r.TxID[:], b[6:22])
	copy(r.AccountID[:], b[22:38])
	p := 38
	for _, v := range [...]*int64{&r.Amount, &r.Delta, &r.Balance, &r.Available, &r.Version, &r.Seq, &r.TimestampUs} {
		*v = int64(binary.BigEndian.Uint64(b[p:]))
		p += 8
	}
	var err error
	if r.Currency, p, err = readString(b, p, CurrencyLen); err != nil {
		return r, err
	}
	if p != len(b) {
		return r, ErrBadWire
	}
	return r, nil
}

// AppendAccount appends the encoding of a's state (not its keys) to dst.
func AppendAccount(dst []byte, a *Account) []byte {
	exists := byte(0)
	if a.Exists {
		exists = 1
	}
	version := byte(wireVersion)
	if a.Owner != "" {
		version = wireVersionOwner
	}
	dst = append(dst, version, exists, byte(a.Status))
	dst = append(dst, a.ID[:]...)
	for _, v := range [...]int64{a.OverdraftLimit, a.Balance, a.Version, a.Seq, a.CreatedUs, a.UpdatedUs} {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	dst = appendString(dst, a.CustomerID)
	dst = appendString(dst, a.Type)
	dst = appendString(dst, a.Currency)
	if version == wireVersionOwner {
		dst = appendString(dst, a.Owner)
	}
	return dst
}

// DecodeAccount decodes AppendAccount's output.
func DecodeAccount(b []byte) (Account, error) {
	var a Account
	const fixed = 3 + 16 + 6*8
	if len(b) < fixed || (b[0] != wireVersion && b[0] != wireVersionOwner) {
		return a, ErrBadWire
	}
	a.Exists, a.Status = b[1] == 1, AccountStatus(b[2])
	copy(a.ID[:], b[3:19])
	p := 19
	for _, v := range [...]*int64{&a.OverdraftLimit, &a.Balance, &a.Version, &a.Seq, &a.CreatedUs, &a.UpdatedUs} {
		*v = int64(binary.BigEndian.Uint64(b[p:]))
		p += 8
	}
	var err error
	for _, f := range [...]struct {
		dst *string
		max int
	}{{&a.CustomerID, CustomerIDLenMax}, {&a.Type, AccountTypeLenMax}, {&a.Currency, CurrencyLen}} {
		if *f.dst, p, err = readString(b, p, f.max); err != nil {
			return a, err
		}
	}
	if b[0] == wireVersionOwner {
		if a.Owner, p, err = readString(b, p, OwnerLenMax); err != nil {
			return a, err
		}
		if a.Owner == "" {
			return a, ErrBadWire // written as version 1
		}
	}
	if p != len(b) {
		return a, ErrBadWire
	}
	return a, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func readString(b []byte, p, max int) (string, int, error) {
	n, w := binary.Uvarint(b[p:])
	if w <= 0 || n > uint64(max) || uint64(len(b)-p-w) < n {
		return "", p, ErrBadWire
	}
	p += w
	return string(b[p : p+int(n)]), p + int(n), nil
}
