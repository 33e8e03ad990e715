// sodium-native ships no types; these are the functions @btt/service-storage uses.
declare module 'sodium-native' {
  const sodium: {
    crypto_generichash_BYTES: number
    crypto_generichash_KEYBYTES: number
    crypto_generichash(out: Uint8Array, input: Uint8Array, key?: Uint8Array): void
    crypto_generichash_batch(out: Uint8Array, inputs: Uint8Array[], key?: Uint8Array): void
    crypto_secretstream_xchacha20poly1305_ABYTES: number
    crypto_secretstream_xchacha20poly1305_HEADERBYTES: number
    crypto_secretstream_xchacha20poly1305_KEYBYTES: number
    crypto_secretstream_xchacha20poly1305_STATEBYTES: number
    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE: number
    crypto_secretstream_xchacha20poly1305_TAG_FINAL: number
    crypto_secretstream_xchacha20poly1305_TAG_PUSH: number
    crypto_secretstream_xchacha20poly1305_keygen(key: Uint8Array): void
    crypto_secretstream_xchacha20poly1305_init_push(state: Uint8Array, header: Uint8Array, key: Uint8Array): void
    crypto_secretstream_xchacha20poly1305_push(state: Uint8Array, c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, tag: number): number
    crypto_secretstream_xchacha20poly1305_init_pull(state: Uint8Array, header: Uint8Array, key: Uint8Array): void
    crypto_secretstream_xchacha20poly1305_pull(state: Uint8Array, m: Uint8Array, tag: Uint8Array, c: Uint8Array, ad: Uint8Array | null): number
    randombytes_buf(buf: Uint8Array): void
  }
  export default sodium
}
