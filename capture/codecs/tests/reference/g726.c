/* spandsp G.726: encode 20 ms packets, decode them. Args: in pkts pcm
 * bit_rate packing (1 left = AAL2, 2 right = RFC 3551). */
#include <stdint.h>
#include <spandsp/telephony.h>
#include <spandsp/g726.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 6) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    int rate = atoi(argv[4]), packing = atoi(argv[5]);
    g726_state_t *enc = g726_init(NULL, rate, G726_ENCODING_LINEAR, packing);
    g726_state_t *dec = g726_init(NULL, rate, G726_ENCODING_LINEAR, packing);
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    uint8_t buf[200];
    int16_t out[400];
    for (size_t i = 0; i + 160 <= n; i += 160) {
        int len = g726_encode(enc, buf, src + i, 160);
        put_record(pk, buf, len);
        int got = g726_decode(dec, out, buf, len);
        fwrite(out, 2, got, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
