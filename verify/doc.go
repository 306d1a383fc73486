// Package verify contains what a remote verifier needs to check the results
// that a guest obtains from the host's TPM through vcomlink: it creates
// credentials for ActivateCredential, and checks signatures, Certify
// attestations and EK certificates.
//
// Functions take TPM structures in the TPM wire format that the vcomlink
// protocol carries (TPMT_PUBLIC, TPM2B_NAME, TPMT_SIGNATURE, TPMS_ATTEST) or
// as go-tpm's tpm2 types. Every error names the structure or field that
// failed and the values involved.
package verify
