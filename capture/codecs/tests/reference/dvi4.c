/* spandsp IMA ADPCM, DVI4 variant with the RFC 3551 header on every
 * packet. Args: in pkts pcm samples_per_packet. */
#include <stdint.h>
#include <spandsp/telephony.h>
#include <spandsp/ima_adpcm.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 5) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    int per = atoi(argv[4]);
    ima_adpcm_state_t *enc = ima_adpcm_init(NULL, IMA_ADPCM_DVI4, 0);
    ima_adpcm_state_t *dec = ima_adpcm_init(NULL, IMA_ADPCM_DVI4, 0);
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    uint8_t buf[1024];
    int16_t out[2048];
    for (size_t i = 0; i + per <= n; i += per) {
        int len = ima_adpcm_encode(enc, buf, src + i, per);
        put_record(pk, buf, len);
        int got = ima_adpcm_decode(dec, out, buf, len);
        fwrite(out, 2, got, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
