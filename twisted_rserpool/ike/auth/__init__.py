"""Authentication in IKE_AUTH beyond pre-shared keys (RFC 7296 sections 2.15-2.16).

signature     RFC 7427 Digital Signature AUTH (method 14) and methods 1, 9-11 (RFC 4754)
certificates  our certificate chain and key; the CAs peers' certificates must chain to
mschapv2      MS-CHAP-V2 (RFC 2759) and the MPPE master keys of the MSK (RFC 3079)
eap           EAP (RFC 3748), EAP-MSCHAPv2, IEapAuthenticator and the users file
"""
