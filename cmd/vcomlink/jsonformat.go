package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// marshalJSON writes a protobuf message of the vcomlink protocol as one
// indented JSON object, with the protobuf field names as keys, in field
// order. Bytes are lowercase hex strings, strings are JSON strings, and
// uint32 values are numbers. Fields that are not set, as proto3 defines
// it, are left out.
func marshalJSON(m proto.Message) ([]byte, error) {
	msg := m.ProtoReflect()
	fields := msg.Descriptor().Fields()

	var b bytes.Buffer
	b.WriteString("{")
	first := true
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !msg.Has(fd) {
			continue
		}

		value, err := jsonValue(fd, msg.Get(fd))
		if err != nil {
			return nil, err
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		fmt.Fprintf(&b, "\n  %q: %s", fd.Name(), value)
	}
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}

func jsonValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	if fd.IsList() || fd.IsMap() {
		return nil, fmt.Errorf("field %s: repeated fields and maps are not supported", fd.Name())
	}
	switch fd.Kind() {
	case protoreflect.BytesKind:
		return json.Marshal(hex.EncodeToString(v.Bytes()))
	case protoreflect.StringKind:
		return json.Marshal(v.String())
	case protoreflect.Uint32Kind:
		return []byte(strconv.FormatUint(v.Uint(), 10)), nil
	default:
		return nil, fmt.Errorf("field %s: kind %s is not supported", fd.Name(), fd.Kind())
	}
}

// unmarshalJSON reads into m the JSON that marshalJSON writes. A key that
// is not a field of m, a value of the wrong JSON type, and bytes that are
// not hex are errors. Keys may come in any order.
func unmarshalJSON(data []byte, m proto.Message) error {
	var object map[string]json.RawMessage
	if err := json.Unmarshal(data, &object); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}

	msg := m.ProtoReflect()
	fields := msg.Descriptor().Fields()
	for key, raw := range object {
		fd := fields.ByName(protoreflect.Name(key))
		if fd == nil {
			return fmt.Errorf("unknown field %q in JSON of %s", key, msg.Descriptor().Name())
		}
		value, err := parseJSONValue(fd, raw)
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		msg.Set(fd, value)
	}
	return nil
}

func parseJSONValue(fd protoreflect.FieldDescriptor, raw json.RawMessage) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return protoreflect.Value{}, fmt.Errorf("expected a string of hex digits")
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("expected hex digits: %w", err)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.StringKind:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return protoreflect.Value{}, fmt.Errorf("expected a string")
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.Uint32Kind:
		var n uint32
		if err := json.Unmarshal(raw, &n); err != nil {
			return protoreflect.Value{}, fmt.Errorf("expected a number from 0 to 4294967295")
		}
		return protoreflect.ValueOfUint32(n), nil
	default:
		return protoreflect.Value{}, fmt.Errorf("kind %s is not supported", fd.Kind())
	}
}
