// sodium-native ships no types; these are the functions @btt/channel and @btt/node use.
declare module 'sodium-native' {
  const sodium: {
    crypto_sign_PUBLICKEYBYTES: number
    crypto_sign_SECRETKEYBYTES: number
    crypto_sign_SEEDBYTES: number
    crypto_sign_BYTES: number
    crypto_generichash_BYTES: number
    crypto_sign_keypair(pk: Buffer, sk: Buffer): void
    crypto_sign_seed_keypair(pk: Buffer, sk: Buffer, seed: Buffer): void
    crypto_sign_detached(sig: Buffer, message: Buffer, sk: Buffer): void
    crypto_sign_verify_detached(sig: Buffer, message: Buffer, pk: Buffer): boolean
    crypto_generichash(out: Buffer, input: Buffer, key?: Buffer): void
    randombytes_buf(buf: Buffer): void
    crypto_core_ed25519_is_valid_point(p: Buffer): boolean
    sodium_memzero(buf: Buffer): void
  }
  export default sodium
}
