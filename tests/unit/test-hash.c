/* SPDX-License-Identifier: MIT */
#include "hash.h"
#include "tests.h"

int main(void)
{
        uint8_t s1[STAMP_SECRET_SEED_SIZE], s2[STAMP_SECRET_SEED_SIZE];
        struct stamp_hasher *h1, *h2, *h1b;
        struct stamp_id a, b, c, d;
        char hex[STAMP_ID_HEX_SIZE];
        static const char data[] = "the same chunk in two stores";

        CHECK_OK(stamp_secret_generate(s1));
        CHECK_OK(stamp_secret_generate(s2));
        CHECK(memcmp(s1, s2, sizeof(s1)) != 0);
        h1 = stamp_hasher_new(s1);
        h1b = stamp_hasher_new(s1);
        h2 = stamp_hasher_new(s2);
        CHECK(h1 && h1b && h2);

        /* Ids differ between stores, and are stable within one. */
        stamp_hasher_id(h1, data, sizeof(data), &a);
        stamp_hasher_id(h2, data, sizeof(data), &b);
        stamp_hasher_id(h1b, data, sizeof(data), &c);
        CHECK(stamp_id_cmp(&a, &b) != 0);
        CHECK(stamp_id_cmp(&a, &c) == 0);
        /* A one-bit change changes the id. */
        {
                char other[sizeof(data)];
                memcpy(other, data, sizeof(data));
                other[3] ^= 1;
                stamp_hasher_id(h1, other, sizeof(other), &d);
                CHECK(stamp_id_cmp(&a, &d) != 0);
        }
        /* Hex round trip, and rejects. */
        stamp_id_to_hex(&a, hex);
        CHECK(strlen(hex) == 32);
        CHECK_OK(stamp_id_from_hex(hex, &d));
        CHECK(stamp_id_cmp(&a, &d) == 0);
        CHECK_RC(stamp_id_from_hex("00", &d), -EINVAL);
        CHECK_RC(stamp_id_from_hex("0123456789ABCDEF0123456789abcdef", &d), -EINVAL);
        CHECK_RC(stamp_id_from_hex(NULL, &d), -EINVAL);
        memset(&d, 0, sizeof(d));
        CHECK(stamp_id_is_null(&d));
        CHECK(!stamp_id_is_null(&a));

        /* The streaming checksum equals the one-shot one. */
        {
                struct stamp_csum *cs = stamp_csum_new();
                struct stamp_id one, two;
                CHECK(cs);
                stamp_csum_update(cs, data, 10);
                stamp_csum_update(cs, data + 10, sizeof(data) - 10);
                stamp_csum_final(cs, &one);
                stamp_checksum128(data, sizeof(data), &two);
                CHECK(stamp_id_cmp(&one, &two) == 0);
                stamp_csum_free(cs);
        }
        stamp_hasher_free(h1);
        stamp_hasher_free(h1b);
        stamp_hasher_free(h2);
        printf("test-hash: ok\n");
        return 0;
}
