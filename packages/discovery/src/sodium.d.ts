// sodium-native ships no types; these are the functions @btt/discovery uses.
declare module 'sodium-native' {
  const sodium: {
    crypto_sign_PUBLICKEYBYTES: number
    crypto_sign_SECRETKEYBYTES: number
    crypto_sign_BYTES: number
    crypto_sign_keypair(pk: Buffer, sk: Buffer): void
    crypto_sign_detached(sig: Buffer, message: Buffer, sk: Buffer): void
    crypto_sign_verify_detached(sig: Buffer, message: Buffer, pk: Buffer): boolean
  }
  export default sodium
}
