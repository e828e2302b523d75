/* libspeex: one frame per record. Args: in pkts pcm mode_id quality. */
#include <speex/speex.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 6) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    const SpeexMode *mode = speex_lib_get_mode(atoi(argv[4]));
    void *enc = speex_encoder_init(mode), *dec = speex_decoder_init(mode);
    int q = atoi(argv[5]), fs = 0;
    speex_encoder_ctl(enc, SPEEX_SET_QUALITY, &q);
    speex_encoder_ctl(enc, SPEEX_GET_FRAME_SIZE, &fs);
    SpeexBits eb, db;
    speex_bits_init(&eb);
    speex_bits_init(&db);
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    char buf[256];
    int16_t out[640];
    for (size_t i = 0; i + fs <= n; i += fs) {
        speex_bits_reset(&eb);
        speex_encode_int(enc, src + i, &eb);
        int len = speex_bits_write(&eb, buf, sizeof buf);
        put_record(pk, (uint8_t *) buf, len);
        speex_bits_read_from(&db, buf, len);
        speex_decode_int(dec, &db, out);
        fwrite(out, 2, fs, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
