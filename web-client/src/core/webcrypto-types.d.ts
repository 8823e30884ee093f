// Not a twin: type names the @hpke/* declarations take from lib.dom (Web Crypto), declared
// here because core/ compiles with lib ES2022 only. Types, no values: core/ never calls Web
// Crypto itself (@hpke/core does, inside the library). Empty bodies merge with lib.dom's
// declarations where both are present; to core/ a key is an opaque handle.

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
interface CryptoKey {}

interface CryptoKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
interface JsonWebKey {}
