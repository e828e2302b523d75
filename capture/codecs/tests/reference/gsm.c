/* libgsm GSM 06.10: 33-octet frames. Args: in pkts pcm. */
#include <gsm.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    gsm enc = gsm_create(), dec = gsm_create();
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    gsm_byte buf[33];
    gsm_signal out[160];
    for (size_t i = 0; i + 160 <= n; i += 160) {
        gsm_encode(enc, src + i, buf);
        put_record(pk, buf, 33);
        gsm_decode(dec, buf, out);
        fwrite(out, 2, 160, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
