/* SPDX-License-Identifier: MIT */
/*
 * What store modules share about a store that fs/ and tools/ must not use:
 * the store directory itself, for the local files kept beside the backend's
 * objects (drill.log, scratch directories below tmp/).
 */
#pragma once

#include "store.h"

/* The store directory's fd; borrowed, valid until stamp_store_free(). */
int stamp_store_dirfd(const struct stamp_store *s);
