package io.isptf.core

/**
 * A tiny JSON reader (RFC 8259): objects become [Map] (key order kept), arrays [List],
 * numbers [Double] (or [Long] when integral and without exponent/fraction), strings,
 * booleans and null. Enough for manifests and export JSONs; no dependency.
 */
object Json {
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipWs()
        val value = p.value()
        p.skipWs()
        if (p.pos != text.length) throw JsonException("trailing characters at offset ${p.pos}")
        return value
    }

    private class Parser(
        val s: String,
    ) {
        var pos = 0

        fun skipWs() {
            while (pos < s.length && s[pos] in " \t\r\n") pos++
        }

        fun fail(what: String): Nothing = throw JsonException("$what at offset $pos")

        fun value(): Any? {
            if (pos >= s.length) fail("unexpected end")
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c in '0'..'9') num() else fail("unexpected '$c'")
            }
        }

        fun literal(
            word: String,
            v: Any?,
        ): Any? {
            if (!s.startsWith(word, pos)) fail("bad literal")
            pos += word.length
            return v
        }

        fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == '}') {
                pos++
                return out
            }
            while (true) {
                skipWs()
                if (pos >= s.length || s[pos] != '"') fail("expected a key")
                val key = str()
                skipWs()
                if (pos >= s.length || s[pos] != ':') fail("expected ':'")
                pos++
                skipWs()
                out[key] = value()
                skipWs()
                if (pos >= s.length) fail("unterminated object")
                when (s[pos++]) {
                    ',' -> continue
                    '}' -> return out
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == ']') {
                pos++
                return out
            }
            while (true) {
                skipWs()
                out.add(value())
                skipWs()
                if (pos >= s.length) fail("unterminated array")
                when (s[pos++]) {
                    ',' -> continue
                    ']' -> return out
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        fun str(): String {
            val sb = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> {
                        return sb.toString()
                    }

                    c == '\\' -> {
                        if (pos >= s.length) fail("bad escape")
                        when (val e = s[pos++]) {
                            '"', '\\', '/' -> {
                                sb.append(e)
                            }

                            'b' -> {
                                sb.append('\b')
                            }

                            'f' -> {
                                sb.append('\u000C')
                            }

                            'n' -> {
                                sb.append('\n')
                            }

                            'r' -> {
                                sb.append('\r')
                            }

                            't' -> {
                                sb.append('\t')
                            }

                            'u' -> {
                                if (pos + 4 > s.length) fail("bad unicode escape")
                                sb.append(s.substring(pos, pos + 4).toIntOrNull(16)?.toChar() ?: fail("bad unicode escape"))
                                pos += 4
                            }

                            else -> {
                                fail("bad escape '\\$e'")
                            }
                        }
                    }

                    c < ' ' -> {
                        fail("control character in string")
                    }

                    else -> {
                        sb.append(c)
                    }
                }
            }
        }

        fun num(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            while (pos < s.length && s[pos] in "0123456789.eE+-") pos++
            val text = s.substring(start, pos)
            if (text.none { it == '.' || it == 'e' || it == 'E' }) text.toLongOrNull()?.let { return it }
            return text.toDoubleOrNull() ?: fail("bad number '$text'")
        }
    }
}

/** Typed access to parsed JSON, with [ManifestException] for a missing or mistyped field. */
internal fun Map<String, Any?>.obj(key: String): Map<String, Any?> {
    @Suppress("UNCHECKED_CAST")
    return this[key] as? Map<String, Any?> ?: throw ManifestException("field '$key' is not an object")
}

internal fun Map<String, Any?>.list(key: String): List<Any?> =
    this[key] as? List<Any?> ?: throw ManifestException("field '$key' is not a list")

internal fun Map<String, Any?>.int(key: String): Int =
    (this[key] as? Number)?.toInt() ?: throw ManifestException("field '$key' is not a number")

internal fun Map<String, Any?>.intOr(
    key: String,
    default: Int,
): Int = (this[key] as? Number)?.toInt() ?: default

internal fun Map<String, Any?>.double(key: String): Double? = (this[key] as? Number)?.toDouble()

internal fun Map<String, Any?>.string(key: String): String = this[key] as? String ?: throw ManifestException("field '$key' is not a string")

@Suppress("UNCHECKED_CAST")
internal fun Any?.asObj(what: String): Map<String, Any?> = this as? Map<String, Any?> ?: throw ManifestException("$what is not an object")

internal fun Any?.asInts(what: String): IntArray =
    (this as? List<*>)?.map { (it as? Number)?.toInt() ?: throw ManifestException("$what holds a non-number") }?.toIntArray()
        ?: throw ManifestException("$what is not a list")
