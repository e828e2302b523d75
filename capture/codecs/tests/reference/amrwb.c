/* vo-amrwbenc encoder + opencore-amrwb decoder, 20 ms storage-format
 * frames. Args: in pkts pcm mode dtx. */
#include <vo-amrwbenc/enc_if.h>
#include <opencore-amrwb/dec_if.h>
#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 6) return 2;
    size_t n;
    int16_t *src = read_pcm(argv[1], &n);
    void *enc = E_IF_init();
    void *dec = D_IF_init();
    FILE *pk = open_out(argv[2]), *pcm = open_out(argv[3]);
    uint8_t buf[128];
    int16_t out[320];
    for (size_t i = 0; i + 320 <= n; i += 320) {
        int len = E_IF_encode(enc, atoi(argv[4]), src + i, buf, atoi(argv[5]));
        put_record(pk, buf, len);
        D_IF_decode(dec, buf, out, 0);
        fwrite(out, 2, 320, pcm);
    }
    fclose(pk);
    fclose(pcm);
    return 0;
}
