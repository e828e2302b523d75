/* Shared I/O of the reference programs the tests build with gcc: read the
 * source speech (raw s16 native-endian mono), write the encoded frames as
 * records (u16 little-endian length, then the octets) and the reference
 * decoder's output (raw s16). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int16_t *read_pcm(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    int16_t *pcm = malloc(bytes + 2);
    *n = fread(pcm, 2, bytes / 2, f);
    fclose(f);
    return pcm;
}

static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    return f;
}

static void put_record(FILE *f, const uint8_t *data, int len)
{
    uint8_t hdr[2] = { (uint8_t) (len & 0xFF), (uint8_t) (len >> 8) };
    fwrite(hdr, 1, 2, f);
    fwrite(data, 1, len, f);
}
