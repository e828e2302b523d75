/* opencore-amrnb: encode 20 ms frames (storage format: ToC octet + speech
 * bits) and decode every frame, NO_DATA ones included. Args: in pkts pcm
 * mode dtx. */
#include <opencore-amrnb/interf_enc.h>
#include <opencore-amrnb/interf_dec.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 6) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    void *enc = Encoder_Interface_init(atoi(argv[5]));
    void *dec = Decoder_Interface_init();
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    uint8_t buf[64];
    int16_t out[160];
    for (size_t i = 0; i + 160 <= n; i += 160) {
        int len = Encoder_Interface_Encode(enc, (enum Mode) atoi(argv[4]), src + i, buf, 0);
        put_record(pk, buf, len);
        Decoder_Interface_Decode(dec, buf, out, 0);
        fwrite(out, 2, 160, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
