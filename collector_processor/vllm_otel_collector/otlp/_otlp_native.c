/*
 * OTLP ExportTraceServiceRequest bytes -> one ClickHouse Native-format block of otel_traces rows.
 *
 * This is the collector's hot path in C (the pure-Python reference is traces.py; both must give identical rows,
 * tests/collector/test_native.py checks that on generated requests). It handles the common case only and answers
 * "use the Python path" (None) for anything else, so every rule about rejections and truncation lives in one place
 * (traces.py):
 *   - any span that traces.py would reject (bad ids, end < start, a time beyond the validation table's range
 *     -- validation.py, handed over once by configure() --, unknown kind/status code, invalid UTF-8),
 *   - anything traces.py would truncate (value longer than max_value_chars, more than max_attributes /
 *     max_events / max_links),
 *   - duplicate keys in one attribute map, kvlist values, arrays nested in arrays, a repeated singular message,
 *   - malformed protobuf framing, or a known field with an unexpected wire type.
 *
 * Row mapping and value stringification are traces.py's (module docstring there). Column types in the block are
 * the table's (LowCardinality columns encoded as such), so ClickHouse inserts the block without conversions.
 *
 * Native format: varint column count, varint row count, then per column its name, its type name and its data
 * (fixed-width little-endian numbers; String = varint length + bytes; Array/Map = UInt64 cumulative offsets then
 * the nested column(s); a Map is Array(Tuple(key, value)) = offsets, keys column, values column).
 * Source: ClickHouse docs, "Native" format and "Data types / Map".
 *
 * Protobuf wire format: https://protobuf.dev/programming-guides/encoding/ ; field numbers from
 * opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* The validation table's time range (validation.py: TIME_NS_MAX), set by configure() at import. */
static uint64_t time_ns_max = (uint64_t)INT64_MAX;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "little-endian hosts only (Native format and protobuf fixed64 are little-endian)"
#endif

enum { OK = 0, FALLBACK = 1, PYERR = -1 };

/* ---------------------------------------------------------------- growable byte buffers */
typedef struct { char *p; size_t len, cap; } Buf;

static int buf_grow(Buf *b, size_t extra) {
    size_t need = b->len + extra;
    if (need <= b->cap) return OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return PYERR; }
    b->p = p; b->cap = cap;
    return OK;
}
static inline int put(Buf *b, const void *s, size_t n) {
    if (!n) return OK;
    if (b->len + n > b->cap && buf_grow(b, n)) return PYERR;
    memcpy(b->p + b->len, s, n); b->len += n; return OK;
}
static inline int put_u64(Buf *b, uint64_t v) { return put(b, &v, 8); }
static inline int put_varint(Buf *b, uint64_t v) {
    uint8_t tmp[10]; int n = 0;
    do { uint8_t c = v & 0x7f; v >>= 7; tmp[n++] = v ? (c | 0x80) : c; } while (v);
    return put(b, tmp, n);
}
static inline int put_str(Buf *b, const void *s, size_t n) {
    if (put_varint(b, n)) return PYERR;
    return put(b, s, n);
}
static inline int put_cstr(Buf *b, const char *s) { return put(b, s, strlen(s)); }

/* ---------------------------------------------------------------- LowCardinality(String) columns
 * A per-block dictionary (entry 0 is "", as ClickHouse writes it) and one UInt32 index per value; written as
 * ClickHouse's Native LowCardinality serialization: [UInt64 version = 1 at the start of the column], then
 * UInt64 (index width code | HasAdditionalKeys 1<<9 | NeedUpdateDictionary 1<<10), UInt64 key count, the keys as a
 * String column, UInt64 index count, the indexes (UInt8/UInt16/UInt32 by dictionary size). No body when there are
 * no values. Source: ClickHouse SerializationLowCardinality (format checked against blocks ClickHouse writes). */
typedef struct {
    Buf keys;               /* serialized String entries */
    Buf idx;                /* uint32 per value */
    Buf raw;                /* raw key bytes, for comparisons */
    uint64_t *meta;         /* per entry: offset in raw << 24 | length (keys < 16 MiB, else FALLBACK) */
    uint32_t *slots;        /* open addressing: entry + 1, 0 = empty */
    uint32_t nkeys, cap, slot_cap;
} LC;

/* Multiply-xorshift over 8-byte words (only used for the dictionary's hash table). */
static inline uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    while (n >= 8) {
        uint64_t w; memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL; h ^= h >> 31;
        s += 8; n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94D049BB133111EBULL;
    return h ^ (h >> 29);
}

static int lc_rehash(LC *lc, uint32_t slot_cap) {
    uint32_t *slots = PyMem_Calloc(slot_cap, sizeof(uint32_t));
    if (!slots) { PyErr_NoMemory(); return PYERR; }
    for (uint32_t k = 1; k < lc->nkeys; k++) {
        uint64_t m = lc->meta[k];
        uint64_t h = hash_bytes((const uint8_t *)lc->raw.p + (m >> 24), m & 0xFFFFFF);
        uint32_t i = (uint32_t)h & (slot_cap - 1);
        while (slots[i]) i = (i + 1) & (slot_cap - 1);
        slots[i] = k + 1;
    }
    PyMem_Free(lc->slots);
    lc->slots = slots; lc->slot_cap = slot_cap;
    return OK;
}

/* Dictionary index of s (added when new). */
static int lc_index(LC *lc, const uint8_t *s, size_t n, uint32_t *out) {
    if (n == 0) { *out = 0; return OK; }
    if (!lc->slot_cap) {  /* first use: entry 0 = "" */
        lc->nkeys = 1;
        if (put_str(&lc->keys, "", 0) || lc_rehash(lc, 64)) return PYERR;
        lc->meta = PyMem_Malloc(64 * sizeof(uint64_t));
        if (!lc->meta) { PyErr_NoMemory(); return PYERR; }
        lc->cap = 64; lc->meta[0] = 0;
    }
    if (n >= (1u << 24)) return FALLBACK;
    uint64_t h = hash_bytes(s, n);
    uint32_t i = (uint32_t)h & (lc->slot_cap - 1);
    while (lc->slots[i]) {
        uint64_t m = lc->meta[lc->slots[i] - 1];
        if ((m & 0xFFFFFF) == n && memcmp(lc->raw.p + (m >> 24), s, n) == 0) { *out = lc->slots[i] - 1; return OK; }
        i = (i + 1) & (lc->slot_cap - 1);
    }
    if (lc->raw.len >= ((uint64_t)1 << 40)) return FALLBACK;
    if (lc->nkeys == lc->cap) {
        uint64_t *meta = PyMem_Realloc(lc->meta, 2 * (size_t)lc->cap * sizeof(uint64_t));
        if (!meta) { PyErr_NoMemory(); return PYERR; }
        lc->meta = meta; lc->cap *= 2;
    }
    uint32_t k = lc->nkeys++;
    lc->meta[k] = ((uint64_t)lc->raw.len << 24) | n;
    lc->slots[i] = k + 1;
    if (put(&lc->raw, s, n) || put_str(&lc->keys, s, n)) return PYERR;
    if (2 * lc->nkeys > lc->slot_cap && lc_rehash(lc, 2 * lc->slot_cap)) return PYERR;
    *out = k;
    return OK;
}

static inline int lc_add(LC *lc, const void *s, size_t n) {
    uint32_t k;
    int e = lc_index(lc, (const uint8_t *)s, n, &k);
    if (e) return e;
    return put(&lc->idx, &k, 4);
}

/* The LC body (everything after the column's version prefix). */
static int lc_write(Buf *out, const LC *lc) {
    uint64_t rows = lc->idx.len / 4;
    if (!rows) return OK;
    uint32_t nkeys = lc->nkeys ? lc->nkeys : 1;
    int width = nkeys <= 256 ? 0 : (nkeys <= 65536 ? 1 : 2);
    if (put_u64(out, (uint64_t)width | (1u << 9) | (1u << 10)) || put_u64(out, nkeys)) return PYERR;
    if (lc->nkeys) { if (put(out, lc->keys.p, lc->keys.len)) return PYERR; }
    else if (put_str(out, "", 0)) return PYERR;
    if (put_u64(out, rows) || buf_grow(out, rows << width)) return PYERR;
    const uint32_t *ix = (const uint32_t *)lc->idx.p;
    char *o = out->p + out->len;
    for (uint64_t i = 0; i < rows; i++) {
        if (width == 0) o[i] = (char)ix[i];
        else if (width == 1) { uint16_t v = (uint16_t)ix[i]; memcpy(o + 2 * i, &v, 2); }
        else memcpy(o + 4 * i, &ix[i], 4);
    }
    out->len += rows << width;
    return OK;
}

static void lc_free(LC *lc) {
    PyMem_Free(lc->keys.p); PyMem_Free(lc->idx.p); PyMem_Free(lc->raw.p);
    PyMem_Free(lc->meta); PyMem_Free(lc->slots);
}

/* ---------------------------------------------------------------- protobuf wire reading */
typedef struct { const uint8_t *p; size_t n; } Slice;
typedef struct { const uint8_t *p, *end; } Rd;
typedef struct { uint32_t num; int wt; uint64_t v; Slice s; } Field;

static inline int rd_varint(Rd *r, uint64_t *out) {
    if (r->p < r->end && *r->p < 0x80) { *out = *r->p++; return OK; }  /* one-byte varints: most keys and lengths */
    uint64_t v = 0; int shift = 0;
    while (r->p < r->end) {
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) { *out = v; return OK; }
        shift += 7;
        if (shift > 63) return FALLBACK;
    }
    return FALLBACK;
}

/* 1 = a field was read, 0 = end of message, FALLBACK (as -2) = malformed. */
static inline int rd_field(Rd *r, Field *f) {
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (rd_varint(r, &key)) return -2;
    f->num = (uint32_t)(key >> 3); f->wt = (int)(key & 7);
    if (f->num == 0) return -2;
    switch (f->wt) {
    case 0: if (rd_varint(r, &f->v)) return -2; break;
    case 1: if (r->end - r->p < 8) return -2; memcpy(&f->v, r->p, 8); r->p += 8; break;
    case 5: { uint32_t v32; if (r->end - r->p < 4) return -2; memcpy(&v32, r->p, 4); f->v = v32; r->p += 4; break; }
    case 2: {
        uint64_t len;
        if (rd_varint(r, &len)) return -2;
        if (len > (uint64_t)(r->end - r->p)) return -2;
        f->s.p = r->p; f->s.n = (size_t)len; r->p += len; break;
    }
    default: return -2;
    }
    return 1;
}
static inline Rd rd_of(Slice s) { Rd r = { s.p, s.p + s.n }; return r; }

/* ---------------------------------------------------------------- text helpers */
/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_ok(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {  /* ASCII fast path, 8 bytes at a time */
            uint64_t w; memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) { i += 8; continue; }
        }
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && s[i + 1] < 0xA0) return 0;
            if (c == 0xED && s[i + 1] >= 0xA0) return 0;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (c == 0xF0 && s[i + 1] < 0x90) return 0;
            if (c == 0xF4 && s[i + 1] >= 0x90) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}
static inline int utf8_ok_s(Slice s) { return utf8_ok(s.p, s.n); }

/* Marks field `num` (< 32) seen; returns 1 when it was already. */
static inline int once(unsigned *seen, uint32_t num) {
    unsigned bit = 1u << num;
    if (*seen & bit) return 1;
    *seen |= bit;
    return 0;
}


/* Characters (code points) of valid UTF-8. */
static size_t utf8_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((uint8_t)s[i] & 0xC0) != 0x80;
    return c;
}

static int put_hex(Buf *b, Slice s) {
    static const char hx[] = "0123456789abcdef";
    if (buf_grow(b, 10 + 2 * s.n)) return PYERR;
    if (put_varint(b, 2 * s.n)) return PYERR;
    char *o = b->p + b->len;
    for (size_t i = 0; i < s.n; i++) { o[2 * i] = hx[s.p[i] >> 4]; o[2 * i + 1] = hx[s.p[i] & 15]; }
    b->len += 2 * s.n;
    return OK;
}

static int put_base64(Buf *b, Slice s) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out = 4 * ((s.n + 2) / 3);
    if (buf_grow(b, out)) return PYERR;
    char *o = b->p + b->len;
    size_t i = 0, j = 0;
    for (; i + 2 < s.n; i += 3) {
        uint32_t v = (s.p[i] << 16) | (s.p[i + 1] << 8) | s.p[i + 2];
        o[j++] = al[v >> 18]; o[j++] = al[(v >> 12) & 63]; o[j++] = al[(v >> 6) & 63]; o[j++] = al[v & 63];
    }
    if (i < s.n) {
        uint32_t v = s.p[i] << 16;
        if (i + 1 < s.n) v |= s.p[i + 1] << 8;
        o[j++] = al[v >> 18]; o[j++] = al[(v >> 12) & 63];
        o[j++] = (i + 1 < s.n) ? al[(v >> 6) & 63] : '=';
        o[j++] = '=';
    }
    b->len += j;
    return OK;
}

/* JSON string as Python's json.dumps(ensure_ascii=False): escapes " \ \b \f \n \r \t, other C0 as \u00xx. */
static int put_json_str(Buf *b, Slice s) {
    static const char hx[] = "0123456789abcdef";
    if (put(b, "\"", 1)) return PYERR;
    size_t start = 0;
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (put(b, s.p + start, i - start)) return PYERR;
        char esc[6];
        size_t en = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = hx[c >> 4]; esc[5] = hx[c & 15]; en = 6;
        }
        if (put(b, esc, en)) return PYERR;
        start = i + 1;
    }
    if (put(b, s.p + start, s.n - start)) return PYERR;
    return put(b, "\"", 1);
}

/* values.py es6: a finite double as Go's encoding/json prints it (pdata AsString's float64AsString): the shortest
   round-trip digits (Python's repr), positional for 1e-6 <= |v| < 1e21, else d.ddde-7 / d.ddde+21. */
static int put_es6(Buf *b, double v) {
    if (v == 0) return put_cstr(b, signbit(v) ? "-0" : "0");
    char *s = PyOS_double_to_string(v, 'r', 0, 0, NULL);
    if (!s) return PYERR;
    char digits[40], out[400];
    int nd = 0, point = 0, seen_point = 0, n = 0;
    const char *p = s;
    if (*p == '-') { out[n++] = '-'; p++; }
    for (; *p && *p != 'e' && nd < 39; p++) {  /* value = 0.DIGITS x 10^point */
        if (*p == '.') { seen_point = 1; continue; }
        if (nd == 0 && *p == '0') { if (seen_point) point--; continue; }
        digits[nd++] = *p;
        if (!seen_point) point++;
    }
    if (*p == 'e') point += atoi(p + 1);
    PyMem_Free(s);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    double a = fabs(v);
    if (a < 1e-6 || a >= 1e21) {
        out[n++] = digits[0];
        if (nd > 1) { out[n++] = '.'; memcpy(out + n, digits + 1, (size_t)(nd - 1)); n += nd - 1; }
        int e10 = point - 1;
        n += snprintf(out + n, sizeof out - (size_t)n, e10 < 0 ? "e-%d" : "e+%02d", e10 < 0 ? -e10 : e10);
    } else if (point <= 0) {
        out[n++] = '0'; out[n++] = '.';
        for (int i = 0; i < -point; i++) out[n++] = '0';
        memcpy(out + n, digits, (size_t)nd); n += nd;
    } else if (point >= nd) {
        memcpy(out + n, digits, (size_t)nd); n += nd;
        for (int i = nd; i < point; i++) out[n++] = '0';
    } else {
        memcpy(out + n, digits, (size_t)point); n += point;
        out[n++] = '.';
        memcpy(out + n, digits + point, (size_t)(nd - point)); n += nd - point;
    }
    return put(b, out, (size_t)n);
}

/* values.py _num: pdata AsString of a double. */
static int put_num(Buf *b, double v) {
    if (isnan(v)) return put_cstr(b, "json: unsupported value: NaN");
    if (isinf(v)) return put_cstr(b, v > 0 ? "json: unsupported value: +Inf" : "json: unsupported value: -Inf");
    return put_es6(b, v);
}

static int put_int64(Buf *b, int64_t v) {
    char tmp[24];
    int n = 24;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { tmp[--n] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[--n] = '-';
    return put(b, tmp + n, (size_t)(24 - n));
}

/* ---------------------------------------------------------------- AnyValue */
enum { AV_NONE = 0, AV_STRING = 1, AV_BOOL = 2, AV_INT = 3, AV_DOUBLE = 4, AV_ARRAY = 5, AV_KVLIST = 6, AV_BYTES = 7 };
typedef struct { int kind; uint64_t v; Slice s; } AnyValue;

static int parse_any(Slice s, AnyValue *av) {
    Rd r = rd_of(s); Field f; int rc, messages = 0;
    av->kind = AV_NONE;
    while ((rc = rd_field(&r, &f)) == 1) {
        if (f.num < 1 || f.num > 7) continue;
        int want = (f.num == 2 || f.num == 3) ? 0 : (f.num == 4 ? 1 : 2);
        if (f.wt != want) return FALLBACK;
        /* a second value field (the oneof's last wins, an array/kvlist merges, and the reference parser validates
         * the UTF-8 of every string occurrence): left to the reference parser */
        if (messages++) return FALLBACK;
        av->kind = (int)f.num; av->v = f.v; av->s = f.s;
    }
    return rc == 0 ? OK : FALLBACK;
}

/* Element of an array value as JSON (values.py _raw + json.dumps). */
static int put_json_value(Buf *b, const AnyValue *av) {
    switch (av->kind) {
    case AV_NONE: return put_cstr(b, "null");
    case AV_STRING: if (!utf8_ok_s(av->s)) return FALLBACK; return put_json_str(b, av->s);
    case AV_BOOL: return put_cstr(b, av->v ? "true" : "false");
    case AV_INT: return put_int64(b, (int64_t)av->v);
    case AV_DOUBLE: {  /* Go's json.Marshal fails on a non-finite double: left to the reference converter */
        double d; memcpy(&d, &av->v, 8);
        return isfinite(d) ? put_es6(b, d) : FALLBACK;
    }
    case AV_BYTES:
        if (put(b, "\"", 1) || put_base64(b, av->s) || put(b, "\"", 1)) return PYERR;
        return OK;
    default: return FALLBACK;  /* nested array / kvlist */
    }
}

/* Top-level attribute value as a string (values.py value_str), written into scratch buffer `b`. */
static int put_value_str(Buf *b, const AnyValue *av) {
    switch (av->kind) {
    case AV_NONE: return OK;
    case AV_STRING: if (!utf8_ok_s(av->s)) return FALLBACK; return put(b, av->s.p, av->s.n);
    case AV_BOOL: return put_cstr(b, av->v ? "true" : "false");
    case AV_INT: return put_int64(b, (int64_t)av->v);
    case AV_DOUBLE: { double d; memcpy(&d, &av->v, 8); return put_num(b, d); }
    case AV_BYTES: return put_base64(b, av->s);
    case AV_ARRAY: {
        Rd r = rd_of(av->s); Field f; int rc, first = 1;
        if (put(b, "[", 1)) return PYERR;
        while ((rc = rd_field(&r, &f)) == 1) {
            if (f.num != 1) continue;
            if (f.wt != 2) return FALLBACK;
            AnyValue el;
            if (parse_any(f.s, &el)) return FALLBACK;
            if (!first && put(b, ",", 1)) return PYERR;
            first = 0;
            int e = put_json_value(b, &el);
            if (e) return e;
        }
        if (rc != 0) return FALLBACK;
        return put(b, "]", 1);
    }
    default: return FALLBACK;  /* kvlist */
    }
}

/* ---------------------------------------------------------------- conversion state */
typedef struct { Slice *a; size_t n, cap; } SliceVec;

static int vec_push(SliceVec *v, Slice s) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 32;
        Slice *a = PyMem_Realloc(v->a, cap * sizeof(Slice));
        if (!a) { PyErr_NoMemory(); return PYERR; }
        v->a = a; v->cap = cap;
    }
    v->a[v->n++] = s;
    return OK;
}

typedef struct {
    Py_ssize_t max_chars, max_attrs, max_events, max_links;
    PyObject *interest;      /* tuple of bytes: attribute keys that put a row into `keyed` */
    PyObject *keyed;         /* list[int] */
    Buf scratch;             /* one stringified value */
    Buf interest_flags;     /* per sa_k dictionary entry: 1 when the key is in `interest` */
    SliceVec kvs, span_kvs, events, links;  /* repeated fields of one message, collected in one pass */
    uint64_t rows;
    /* columns */
    Buf ts, tid, sid, pid, tstate, ra_off, ra_v, scope_name, scope_ver, sa_off, sa_v, dur, msg,
        ev_off, ev_ts, ev_aoff, ev_v, ln_off, ln_tid, ln_sid, ln_tstate, ln_aoff, ln_v;
    LC name, kind, svc, code, ra_k, sa_k, ev_name, ev_k, ln_k;
    uint64_t ra_n, sa_n, ev_n, ev_an, ln_n, ln_an;
    /* current resource */
    Buf res_kidx, res_v, res_svc;  /* resource keys as ra_k indexes (uint32), values serialized, service.name */
    uint64_t res_count;
} St;

static Buf *all_bufs(St *st, int i) {
    Buf *list[] = { &st->scratch, &st->ts, &st->tid, &st->sid, &st->pid, &st->tstate, &st->ra_off, &st->ra_v,
                    &st->scope_name, &st->scope_ver, &st->sa_off, &st->sa_v, &st->dur, &st->msg, &st->ev_off,
                    &st->ev_ts, &st->ev_aoff, &st->ev_v, &st->ln_off, &st->ln_tid, &st->ln_sid, &st->ln_tstate,
                    &st->ln_aoff, &st->ln_v, &st->res_kidx, &st->res_v, &st->res_svc, NULL };
    return list[i];
}

static void st_free(St *st) {
    for (int i = 0; all_bufs(st, i); i++) PyMem_Free(all_bufs(st, i)->p);
    PyMem_Free(st->interest_flags.p);
    LC *lcs[] = { &st->name, &st->kind, &st->svc, &st->code, &st->ra_k, &st->sa_k, &st->ev_name, &st->ev_k, &st->ln_k };
    for (size_t i = 0; i < sizeof lcs / sizeof lcs[0]; i++) lc_free(lcs[i]);
    PyMem_Free(st->kvs.a); PyMem_Free(st->span_kvs.a); PyMem_Free(st->events.a); PyMem_Free(st->links.a);
    Py_XDECREF(st->keyed);
}

/*
 * Encode the KeyValues of one map (slices of repeated field `field` of message `msg`) as strings appended to
 * keys/vals; *count gets the number of entries. *hit is set when a key is one of the interest keys (may be NULL).
 * *svc receives the value of key "service.name" when svc != NULL.
 */
static int encode_kvs(St *st, const Slice *kv, size_t count, LC *keys, Buf *key_idx, Buf *vals, int *hit,
                      Buf *svc) {
    if ((Py_ssize_t)count > st->max_attrs) return FALLBACK;
    for (size_t n = 1; n <= count; n++) {
        Field f; f.s = kv[n - 1];
        Slice key = { (const uint8_t *)"", 0 }, val = { NULL, 0 };
        int has_val = 0, has_key = 0;
        Rd kr = rd_of(f.s); Field kf; int krc;
        while ((krc = rd_field(&kr, &kf)) == 1) {
            if (kf.num == 1) { if (kf.wt != 2 || has_key++) return FALLBACK; key = kf.s; }
            else if (kf.num == 2) { if (kf.wt != 2 || has_val) return FALLBACK; val = kf.s; has_val = 1; }
        }
        if (krc != 0 || !utf8_ok_s(key)) return FALLBACK;
        uint32_t ki;
        int e = lc_index(keys, key.p, key.n, &ki);
        if (e) return e;
        /* duplicate key: its dictionary index is among this map's previous n - 1 indexes (the end of key_idx) */
        if (n > 1) {
            const uint32_t *prev = (const uint32_t *)(key_idx->p + key_idx->len) - (n - 1);
            for (size_t i = 0; i + 1 < n; i++) if (prev[i] == ki) return FALLBACK;
        }
        AnyValue av = { AV_NONE, 0, { NULL, 0 } };
        if (has_val && parse_any(val, &av)) return FALLBACK;
        st->scratch.len = 0;
        if ((e = put_value_str(&st->scratch, &av))) return e;
        if ((Py_ssize_t)st->scratch.len > st->max_chars
            && (Py_ssize_t)utf8_chars(st->scratch.p, st->scratch.len) > st->max_chars) return FALLBACK;
        if (put(key_idx, &ki, 4) || put_str(vals, st->scratch.p, st->scratch.len)) return PYERR;
        if (svc && key.n == 12 && memcmp(key.p, "service.name", 12) == 0) {
            svc->len = 0;
            if (put(svc, st->scratch.p, st->scratch.len)) return PYERR;
        }
        if (hit) {
            /* one flag per dictionary entry of `keys`: is it an interest key? (computed once per new entry) */
            while (st->interest_flags.len <= ki) {
                uint32_t k = (uint32_t)st->interest_flags.len;
                uint64_t m = k ? keys->meta[k] : 0;  /* entry 0 is "" (meta may not exist yet) */
                const char *kp = k ? keys->raw.p + (m >> 24) : "";
                size_t kn = k ? (size_t)(m & 0xFFFFFF) : 0;
                char flag = 0;
                for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(st->interest); i++) {
                    PyObject *ik = PyTuple_GET_ITEM(st->interest, i);
                    if ((size_t)PyBytes_GET_SIZE(ik) == kn && memcmp(PyBytes_AS_STRING(ik), kp, kn) == 0) flag = 1;
                }
                if (put(&st->interest_flags, &flag, 1)) return PYERR;
            }
            if (st->interest_flags.p[ki]) *hit = 1;
        }
    }
    return OK;
}

/* encode_kvs over the repeated KeyValue field `field` of message `msg`; *count gets the number of entries. */
static int encode_map(St *st, Slice msg, uint32_t field, LC *keys, Buf *key_idx, Buf *vals, uint64_t *count,
                      int *hit, Buf *svc) {
    Rd r = rd_of(msg); Field f; int rc;
    st->kvs.n = 0;
    while ((rc = rd_field(&r, &f)) == 1) {
        if (f.num != field) continue;
        if (f.wt != 2) return FALLBACK;
        if (vec_push(&st->kvs, f.s)) return PYERR;
    }
    if (rc != 0) return FALLBACK;
    *count = st->kvs.n;
    return encode_kvs(st, st->kvs.a, st->kvs.n, keys, key_idx, vals, hit, svc);
}

static int all_zero(Slice s) {
    for (size_t i = 0; i < s.n; i++) if (s.p[i]) return 0;
    return 1;
}

static int add_index(PyObject *list, uint64_t row) {
    PyObject *v = PyLong_FromUnsignedLongLong(row);
    if (!v) return PYERR;
    int rc = PyList_Append(list, v);
    Py_DECREF(v);
    return rc ? PYERR : OK;
}

static int do_span(St *st, Slice span, Slice scope_name, Slice scope_ver) {
    Rd r = rd_of(span); Field f; int rc, e;
    Slice tid = {0}, sid = {0}, tstate = {0}, pid = {0}, name = {0}, status = {0};
    uint64_t kind = 0, start = 0, end = 0;
    int has_status = 0;
    unsigned seen = 0;
    st->span_kvs.n = st->events.n = st->links.n = 0;
    while ((rc = rd_field(&r, &f)) == 1) {
        if ((f.num == 3 || f.num == 5) && once(&seen, f.num)) return FALLBACK;  /* trace_state, name: strings */
        switch (f.num) {
        case 1: if (f.wt != 2) return FALLBACK; tid = f.s; break;
        case 2: if (f.wt != 2) return FALLBACK; sid = f.s; break;
        case 3: if (f.wt != 2) return FALLBACK; tstate = f.s; break;
        case 4: if (f.wt != 2) return FALLBACK; pid = f.s; break;
        case 5: if (f.wt != 2) return FALLBACK; name = f.s; break;
        case 6: if (f.wt != 0) return FALLBACK; kind = f.v; break;
        case 7: if (f.wt != 1) return FALLBACK; start = f.v; break;
        case 8: if (f.wt != 1) return FALLBACK; end = f.v; break;
        case 9: if (f.wt != 2) return FALLBACK; if (vec_push(&st->span_kvs, f.s)) return PYERR; break;
        case 11: if (f.wt != 2) return FALLBACK; if (vec_push(&st->events, f.s)) return PYERR; break;
        case 13: if (f.wt != 2) return FALLBACK; if (vec_push(&st->links, f.s)) return PYERR; break;
        case 15: if (f.wt != 2 || has_status) return FALLBACK; status = f.s; has_status = 1; break;
        default: break;
        }
    }
    if (rc != 0) return FALLBACK;
    /* traces.py _span_error, in the same spirit: anything it rejects goes to the Python path */
    if (tid.n != 16 || all_zero(tid) || sid.n != 8 || all_zero(sid) || (pid.n != 0 && pid.n != 8)) return FALLBACK;
    if (end < start || start > time_ns_max || end > time_ns_max || kind > 5) return FALLBACK;
    if (!utf8_ok_s(tstate) || !utf8_ok_s(name)) return FALLBACK;
    uint64_t code = 0;
    Slice smsg = { (const uint8_t *)"", 0 };
    if (has_status) {
        Rd sr = rd_of(status); Field sf; int src; unsigned sseen = 0;
        while ((src = rd_field(&sr, &sf)) == 1) {
            if (sf.num == 2) { if (sf.wt != 2 || once(&sseen, 2)) return FALLBACK; smsg = sf.s; }
            else if (sf.num == 3) { if (sf.wt != 0) return FALLBACK; code = sf.v; }
        }
        if (src != 0 || code > 2 || !utf8_ok_s(smsg)) return FALLBACK;
    }
    size_t n_events = st->events.n, n_links = st->links.n;
    if ((Py_ssize_t)n_events > st->max_events || (Py_ssize_t)n_links > st->max_links) return FALLBACK;

    int hit = 0;
    if ((e = encode_kvs(st, st->span_kvs.a, st->span_kvs.n, &st->sa_k, &st->sa_k.idx, &st->sa_v, &hit, NULL)))
        return e;
    st->sa_n += st->span_kvs.n;

    for (size_t i = 0; i < n_events; i++) {
        f.s = st->events.a[i];
        {
            Rd er = rd_of(f.s); Field ef; int erc; unsigned eseen = 0;
            uint64_t t = 0; Slice en = { (const uint8_t *)"", 0 };
            while ((erc = rd_field(&er, &ef)) == 1) {
                if (ef.num == 1) { if (ef.wt != 1) return FALLBACK; t = ef.v; }
                else if (ef.num == 2) { if (ef.wt != 2 || once(&eseen, 2)) return FALLBACK; en = ef.s; }
            }
            if (erc != 0 || t > time_ns_max || !utf8_ok_s(en)) return FALLBACK;
            uint64_t ea = 0;
            if ((e = encode_map(st, f.s, 3, &st->ev_k, &st->ev_k.idx, &st->ev_v, &ea, NULL, NULL))) return e;
            st->ev_an += ea;
            if (put_u64(&st->ev_aoff, st->ev_an) || put_u64(&st->ev_ts, t) || lc_add(&st->ev_name, en.p, en.n))
                return PYERR;
        }
    }
    for (size_t i = 0; i < n_links; i++) {
        f.s = st->links.a[i];
        {
            Rd lr = rd_of(f.s); Field lf; int lrc; unsigned lseen = 0;
            Slice lt = {0}, ls = {0}, lst = {0};
            while ((lrc = rd_field(&lr, &lf)) == 1) {
                if (lf.num >= 1 && lf.num <= 3) {
                    if (lf.wt != 2 || (lf.num == 3 && once(&lseen, 3))) return FALLBACK;
                    if (lf.num == 1) lt = lf.s; else if (lf.num == 2) ls = lf.s; else lst = lf.s;
                }
            }
            if (lrc != 0 || (lt.n != 0 && lt.n != 16) || (ls.n != 0 && ls.n != 8) || !utf8_ok_s(lst)) return FALLBACK;
            uint64_t la = 0;
            if ((e = encode_map(st, f.s, 4, &st->ln_k, &st->ln_k.idx, &st->ln_v, &la, NULL, NULL))) return e;
            st->ln_an += la;
            if (put_u64(&st->ln_aoff, st->ln_an) || put_hex(&st->ln_tid, lt) || put_hex(&st->ln_sid, ls)
                || put_str(&st->ln_tstate, lst.p, lst.n)) return PYERR;
        }
    }
    st->ev_n += n_events;
    st->ln_n += n_links;

    static const char *kinds[] = { "Unspecified", "Internal", "Server", "Client", "Producer", "Consumer" };
    static const char *codes[] = { "Unset", "Ok", "Error" };
    st->ra_n += st->res_count;
    if (put_u64(&st->ts, start) || put_hex(&st->tid, tid) || put_hex(&st->sid, sid) || put_hex(&st->pid, pid)
        || put_str(&st->tstate, tstate.p, tstate.n) || lc_add(&st->name, name.p, name.n)
        || lc_add(&st->kind, kinds[kind], strlen(kinds[kind]))
        || lc_add(&st->svc, st->res_svc.p, st->res_svc.len)
        || put_u64(&st->ra_off, st->ra_n) || put(&st->ra_k.idx, st->res_kidx.p, st->res_kidx.len)
        || put(&st->ra_v, st->res_v.p, st->res_v.len)
        || put_str(&st->scope_name, scope_name.p, scope_name.n) || put_str(&st->scope_ver, scope_ver.p, scope_ver.n)
        || put_u64(&st->sa_off, st->sa_n) || put_u64(&st->dur, end - start)
        || lc_add(&st->code, codes[code], strlen(codes[code])) || put_str(&st->msg, smsg.p, smsg.n)
        || put_u64(&st->ev_off, st->ev_n) || put_u64(&st->ln_off, st->ln_n)) return PYERR;

    uint64_t row = st->rows++;
    if (hit && add_index(st->keyed, row)) return PYERR;
    return OK;
}

/* ResourceSpans / ScopeSpans: their singular message field 1 (resource / scope), checking that the repeated field 2
 * (scope_spans / spans) is length-delimited and that field 3 (schema_url, not stored) is valid UTF-8.
 *
 * A singular string field that occurs twice goes to the Python path everywhere below: protobuf keeps the last
 * occurrence, but the reference parser refuses invalid UTF-8 in any of them. */
static int header_field(Slice msg, Slice *one, int *has) {
    Rd r = rd_of(msg); Field f; int rc;
    *has = 0;
    while ((rc = rd_field(&r, &f)) == 1) {
        if (f.num == 1) { if (f.wt != 2 || *has) return FALLBACK; *one = f.s; *has = 1; }
        else if (f.num == 2 && f.wt != 2) return FALLBACK;
        else if (f.num == 3 && (f.wt != 2 || !utf8_ok_s(f.s))) return FALLBACK;  /* schema_url: a string too */
    }
    return rc == 0 ? OK : FALLBACK;
}

static int do_scope_spans(St *st, Slice ss) {
    Rd r; Field f; int rc, e;
    Slice scope = {0}; int has_scope;
    if (header_field(ss, &scope, &has_scope)) return FALLBACK;
    Slice sname = { (const uint8_t *)"", 0 }, sver = { (const uint8_t *)"", 0 };
    if (has_scope) {
        Rd sr = rd_of(scope); Field sf; int src; unsigned seen = 0;
        while ((src = rd_field(&sr, &sf)) == 1) {
            if (sf.num == 1 || sf.num == 2) {
                if (sf.wt != 2 || once(&seen, sf.num)) return FALLBACK;
                if (sf.num == 1) sname = sf.s; else sver = sf.s;
            }
            else if (sf.num == 3) return FALLBACK;  /* scope attributes: validated by the Python path */
        }
        if (src != 0 || !utf8_ok_s(sname) || !utf8_ok_s(sver)) return FALLBACK;
    }
    r = rd_of(ss);
    while ((rc = rd_field(&r, &f)) == 1)
        if (f.num == 2 && (e = do_span(st, f.s, sname, sver))) return e;
    return OK;
}

static int do_resource_spans(St *st, Slice rs) {
    Rd r; Field f; int rc, e;
    Slice res = {0}; int has_res;
    if (header_field(rs, &res, &has_res)) return FALLBACK;
    st->res_kidx.len = st->res_v.len = st->res_svc.len = 0;
    st->res_count = 0;
    if (has_res && (e = encode_map(st, res, 1, &st->ra_k, &st->res_kidx, &st->res_v, &st->res_count, NULL,
                                   &st->res_svc))) return e;
    r = rd_of(rs);
    while ((rc = rd_field(&r, &f)) == 1)
        if (f.num == 2 && (e = do_scope_spans(st, f.s))) return e;
    return OK;
}

static int put_column(Buf *out, const char *name, const char *type) {
    if (put_str(out, name, strlen(name)) || put_str(out, type, strlen(type))) return PYERR;
    return OK;
}

static int put_lc_prefix(Buf *out) { return put_u64(out, 1); }

static int assemble(St *st, Buf *out) {
    const char *S = "String", *L = "LowCardinality(String)", *M = "Map(LowCardinality(String), String)",
               *AS = "Array(String)", *AM = "Array(Map(LowCardinality(String), String))";
    if (put_varint(out, 22) || put_varint(out, st->rows)) return PYERR;
#define COL(nm, ty) if (put_column(out, nm, ty)) return PYERR;
#define B(buf) if (put(out, (buf)->p, (buf)->len)) return PYERR;
#define LCB(lc) if (lc_write(out, lc)) return PYERR;
#define PFX if (put_lc_prefix(out)) return PYERR;
    COL("Timestamp", "DateTime64(9)") B(&st->ts)
    COL("TraceId", S) B(&st->tid)
    COL("SpanId", S) B(&st->sid)
    COL("ParentSpanId", S) B(&st->pid)
    COL("TraceState", S) B(&st->tstate)
    COL("SpanName", L) PFX LCB(&st->name)
    COL("SpanKind", L) PFX LCB(&st->kind)
    COL("ServiceName", L) PFX LCB(&st->svc)
    COL("ResourceAttributes", M) PFX B(&st->ra_off) LCB(&st->ra_k) B(&st->ra_v)
    COL("ScopeName", S) B(&st->scope_name)
    COL("ScopeVersion", S) B(&st->scope_ver)
    COL("SpanAttributes", M) PFX B(&st->sa_off) LCB(&st->sa_k) B(&st->sa_v)
    COL("Duration", "UInt64") B(&st->dur)
    COL("StatusCode", L) PFX LCB(&st->code)
    COL("StatusMessage", S) B(&st->msg)
    COL("Events.Timestamp", "Array(DateTime64(9))") B(&st->ev_off) B(&st->ev_ts)
    COL("Events.Name", "Array(LowCardinality(String))") PFX B(&st->ev_off) LCB(&st->ev_name)
    COL("Events.Attributes", AM) PFX B(&st->ev_off) B(&st->ev_aoff) LCB(&st->ev_k) B(&st->ev_v)
    COL("Links.TraceId", AS) B(&st->ln_off) B(&st->ln_tid)
    COL("Links.SpanId", AS) B(&st->ln_off) B(&st->ln_sid)
    COL("Links.TraceState", AS) B(&st->ln_off) B(&st->ln_tstate)
    COL("Links.Attributes", AM) PFX B(&st->ln_off) B(&st->ln_aoff) LCB(&st->ln_k) B(&st->ln_v)
#undef COL
#undef B
#undef LCB
#undef PFX
    return OK;
}

PyDoc_STRVAR(convert_doc,
"convert(body, max_value_chars, max_attributes, max_events, max_links, interest_keys) -> tuple | None\n\n"
"Convert one OTLP ExportTraceServiceRequest (bytes-like) into a ClickHouse Native block of otel_traces rows.\n"
"Returns (block: bytes, rows: int, keyed_rows: list[int], names: list[bytes], name_index: bytes) -- keyed_rows\n"
"are the rows (0-based, wire order) with an attribute key in interest_keys (tuple of bytes); names are the distinct\n"
"span names (names[0] is b''), name_index holds one little-endian uint32 per row: its span name's position in\n"
"names -- or None when the request needs the Python path (see the file comment). Raises MemoryError only.");

static PyObject *convert(PyObject *self, PyObject *args) {
    Py_buffer body;
    St st;
    memset(&st, 0, sizeof st);
    if (!PyArg_ParseTuple(args, "y*nnnnO!", &body, &st.max_chars, &st.max_attrs, &st.max_events, &st.max_links,
                          &PyTuple_Type, &st.interest))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(st.interest); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(st.interest, i))) {
            PyBuffer_Release(&body);
            PyErr_SetString(PyExc_TypeError, "interest_keys must be a tuple of bytes");
            return NULL;
        }
    PyObject *result = NULL;
    int rc = OK;
    st.keyed = PyList_New(0);
    if (!st.keyed) { rc = PYERR; goto done; }
    Slice whole = { (const uint8_t *)body.buf, (size_t)body.len };
    Rd r = rd_of(whole); Field f; int frc;
    while ((frc = rd_field(&r, &f)) == 1) {
        if (f.num != 1) continue;
        if (f.wt != 2) { rc = FALLBACK; goto done; }
        if ((rc = do_resource_spans(&st, f.s))) goto done;
    }
    if (frc != 0) { rc = FALLBACK; goto done; }
    Buf out = { NULL, 0, 0 };
    if (st.rows) {
        if (assemble(&st, &out)) { PyMem_Free(out.p); rc = PYERR; goto done; }
    }
    PyObject *block = PyBytes_FromStringAndSize(out.p ? out.p : "", (Py_ssize_t)out.len);
    PyMem_Free(out.p);
    if (!block) { rc = PYERR; goto done; }
    PyObject *names = PyList_New(0), *name_index = NULL;
    if (!names) { Py_DECREF(block); rc = PYERR; goto done; }
    {
        Rd kr = { (const uint8_t *)st.name.keys.p, (const uint8_t *)st.name.keys.p + st.name.keys.len };
        while (kr.p < kr.end) {  /* the dictionary's serialized entries: varint length + bytes */
            uint64_t n;
            if (rd_varint(&kr, &n)) break;
            PyObject *b = PyBytes_FromStringAndSize((const char *)kr.p, (Py_ssize_t)n);
            if (!b || PyList_Append(names, b)) { Py_XDECREF(b); rc = PYERR; break; }
            Py_DECREF(b);
            kr.p += n;
        }
    }
    if (rc == OK) name_index = PyBytes_FromStringAndSize(st.name.idx.p ? st.name.idx.p : "", (Py_ssize_t)st.name.idx.len);
    if (rc != OK || !name_index) { Py_DECREF(block); Py_DECREF(names); rc = PYERR; goto done; }
    result = Py_BuildValue("(NKONN)", block, (unsigned long long)st.rows, st.keyed, names, name_index);
done:
    PyBuffer_Release(&body);
    st_free(&st);
    if (rc == PYERR) { Py_XDECREF(result); return NULL; }
    if (rc == FALLBACK) { Py_XDECREF(result); Py_RETURN_NONE; }
    return result;
}

PyDoc_STRVAR(configure_doc,
"configure(time_ns_max: int) -> None\n\n"
"Set the ranges of the validation table (validation.native_ranges()): a span or event time above time_ns_max\n"
"makes convert() decline the request (the Python path rejects that span). Raises OverflowError beyond 2^64-1.");

static PyObject *configure(PyObject *self, PyObject *args) {
    unsigned long long tmax;
    if (!PyArg_ParseTuple(args, "K", &tmax)) return NULL;
    time_ns_max = (uint64_t)tmax;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    { "convert", convert, METH_VARARGS, convert_doc },
    { "configure", configure, METH_VARARGS, configure_doc },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlp_native",
    "OTLP trace requests -> ClickHouse Native blocks (the collector's hot path; reference: traces.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__otlp_native(void) { return PyModule_Create(&module); }
