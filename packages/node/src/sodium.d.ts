// sodium-native ships no types; these are the functions this package uses.
declare module 'sodium-native' {
  const sodium: {
    crypto_sign_PUBLICKEYBYTES: number
    crypto_sign_SECRETKEYBYTES: number
    crypto_sign_SEEDBYTES: number
    crypto_sign_keypair(pk: Buffer, sk: Buffer): void
    crypto_sign_seed_keypair(pk: Buffer, sk: Buffer, seed: Buffer): void
    sodium_memzero(buf: Buffer): void
  }
  export default sodium
}
