package provision

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// tpmProperties reads the fixed TPM properties first to last with
// GetCapability(TPM_CAP_TPM_PROPERTIES), in as many commands as the TPM
// needs. A property that the TPM does not report is missing from the map.
func tpmProperties(tpm transport.TPM, first, last tpm2.TPMPT) (map[tpm2.TPMPT]uint32, error) {
	properties := make(map[tpm2.TPMPT]uint32)

	next := first
	for next <= last {
		response, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapTPMProperties,
			Property:      uint32(next),
			PropertyCount: uint32(last-next) + 1,
		}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("GetCapability(TPM_CAP_TPM_PROPERTIES, 0x%X): %w", uint32(next), err)
		}

		list, err := response.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, fmt.Errorf("GetCapability(TPM_CAP_TPM_PROPERTIES, 0x%X): %w", uint32(next), err)
		}

		for _, property := range list.TPMProperty {
			if property.Property >= first && property.Property <= last {
				properties[property.Property] = property.Value
			}
		}
		if !response.MoreData || len(list.TPMProperty) == 0 {
			break
		}
		after := list.TPMProperty[len(list.TPMProperty)-1].Property + 1
		if after <= next {
			return nil, fmt.Errorf("GetCapability(TPM_CAP_TPM_PROPERTIES, 0x%X): TPM returned no progress with moreData set", uint32(next))
		}
		next = after
	}
	return properties, nil
}

// nvBufferMax reads TPM_PT_NV_BUFFER_MAX, the largest NV_Write or NV_Read
// the TPM accepts, in bytes.
func nvBufferMax(tpm transport.TPM) (int, error) {
	properties, err := tpmProperties(tpm, tpm2.TPMPTNVBufferMax, tpm2.TPMPTNVBufferMax)
	if err != nil {
		return 0, err
	}

	size, ok := properties[tpm2.TPMPTNVBufferMax]
	if !ok || size == 0 {
		return 0, fmt.Errorf("TPM reported no TPM_PT_NV_BUFFER_MAX")
	}
	return int(size), nil
}

// readTPMInfo describes the TPM from its fixed properties: the
// manufacturer, vendor strings, firmware version and specification.
func readTPMInfo(tpm transport.TPM) (TPMInfo, error) {
	properties, err := tpmProperties(tpm, tpm2.TPMPTFamilyIndicator, tpm2.TPMPTFirmwareVersion1)
	if err != nil {
		return TPMInfo{}, err
	}

	for _, required := range []tpm2.TPMPT{tpm2.TPMPTFamilyIndicator, tpm2.TPMPTManufacturer} {
		if _, ok := properties[required]; !ok {
			return TPMInfo{}, fmt.Errorf("TPM reported no property 0x%X", uint32(required))
		}
	}

	var model strings.Builder
	vendorStrings := []tpm2.TPMPT{
		tpm2.TPMPTVendorString1, tpm2.TPMPTVendorString2,
		tpm2.TPMPTVendorString3, tpm2.TPMPTVendorString4,
	}
	for _, property := range vendorStrings {
		model.WriteString(propertyText(properties[property]))
	}

	info := TPMInfo{
		Manufacturer: fmt.Sprintf("id:%08X", properties[tpm2.TPMPTManufacturer]),
		Model:        strings.TrimSpace(model.String()),
		Version:      fmt.Sprintf("id:%08X", properties[tpm2.TPMPTFirmwareVersion1]),
		SpecFamily:   propertyText(properties[tpm2.TPMPTFamilyIndicator]),
		SpecLevel:    int(properties[tpm2.TPMPTLevel]),
		SpecRevision: int(properties[tpm2.TPMPTRevision]),
	}
	if info.Model == "" {
		info.Model = "unknown"
	}
	return info, nil
}

// propertyText decodes a property that holds up to 4 ASCII characters,
// such as TPM_PT_FAMILY_INDICATOR or TPM_PT_VENDOR_STRING_1. It drops NUL
// padding and any other byte that is not printable ASCII, so the text is
// valid in a UTF8String.
func propertyText(value uint32) string {
	var raw [4]byte
	binary.BigEndian.PutUint32(raw[:], value)

	var text strings.Builder
	for _, b := range raw {
		if b >= 0x20 && b <= 0x7E {
			text.WriteByte(b)
		}
	}
	return text.String()
}
