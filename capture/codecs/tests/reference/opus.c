/* libopus: 20 ms packets at 48 kHz, VoIP application. Mono encodes the
 * speech; stereo puts the speech on the left and the same speech 250 ms
 * later at half level on the right, so a decoder that mixes or swaps the
 * channels is caught. Writes the reference decoder's output interleaved.
 * Args: in pkts pcm channels bitrate. */
#include <opus/opus.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 6) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    int ch = atoi(argv[4]), err = 0;
    OpusEncoder *enc = opus_encoder_create(48000, ch, OPUS_APPLICATION_VOIP, &err);
    if (err != OPUS_OK) return 3;
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(atoi(argv[5])));
    OpusDecoder *dec = opus_decoder_create(48000, ch, &err);
    if (err != OPUS_OK) return 3;
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    const size_t delay = 12000;
    int16_t in[960 * 2], out[960 * 2];
    unsigned char buf[1500];
    for (size_t i = 0; i + 960 <= n; i += 960) {
        for (size_t k = 0; k < 960; k++) {
            if (ch == 1) {
                in[k] = src[i + k];
            } else {
                size_t j = i + k;
                in[2 * k] = src[j];
                in[2 * k + 1] = j >= delay ? src[j - delay] / 2 : 0;
            }
        }
        int len = opus_encode(enc, in, 960, buf, sizeof buf);
        if (len < 0) return 4;
        put_record(pk, buf, len);
        int got = opus_decode(dec, buf, len, out, 960, 0);
        if (got < 0) return 5;
        fwrite(out, 2, (size_t) got * ch, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
