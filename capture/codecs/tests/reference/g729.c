/* bcg729 with VAD/DTX (Annex B): 10 ms frames of 10 octets, SID frames of
 * 2, untransmitted frames of 0 (decoded as bcg729's users do: no bits,
 * erasure flag set, which continues comfort noise after a SID). Args: in
 * pkts pcm. */
#include <bcg729/encoder.h>
#include <bcg729/decoder.h>
#include <string.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    bcg729EncoderChannelContextStruct *enc = initBcg729EncoderChannel(1);
    bcg729DecoderChannelContextStruct *dec = initBcg729DecoderChannel();
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    uint8_t buf[16] = {0}, len = 0;
    int16_t out[80];
    for (size_t i = 0; i + 80 <= n; i += 80) {
        bcg729Encoder(enc, src + i, buf, &len);
        put_record(pk, buf, len);
        /* bcg729 reads the buffer even for an erased frame: both this
         * program and our decoder give it zeros. */
        if (len == 0)
            memset(buf, 0, sizeof buf);
        bcg729Decoder(dec, buf, len, len == 0, len == 2, 0, out);
        fwrite(out, 2, 80, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
