// defines: constrained decoding for JSON — a byte-level pushdown automaton that accepts exactly the prefixes of
// JSON documents fitting a schema, so a generator can mask every token that would leave that language.
// Schemas: a subset of JSON Schema that can be enforced left to right — type (object, array, string, number,
// integer, boolean, null, or a list of them), properties + required (objects take only their declared
// properties, each at most once; an object without properties takes any keys), items, minItems, maxItems,
// minLength, maxLength (characters), enum (of strings, numbers, booleans, null), const; annotations (title, description, $schema, default,
// examples) are ignored; anything else is refused by name.
#pragma once
#include <stddef.h>

typedef struct JsonSchema JsonSchema;
typedef struct JsonMatcher JsonMatcher;

// Compiles a schema (JSON text). NULL with an error naming the unsupported keyword or bad value.
JsonSchema *json_schema_compile(const char *schema_json);
JsonSchema *json_schema_any_object(void);  // json_object mode: any JSON object
void json_schema_free(JsonSchema *s);

JsonMatcher *json_matcher_new(const JsonSchema *s);  // at the start of the document
void json_matcher_free(JsonMatcher *m);
// 1 when the bytes keep the text a prefix of a document the schema accepts (m unchanged).
int json_matcher_accepts(const JsonMatcher *m, const char *bytes, size_t n);
// Appends the bytes (they must be accepted). Returns 0, -1 when they were not.
int json_matcher_feed(JsonMatcher *m, const char *bytes, size_t n);
// 1 when the text so far is a whole document (generation may end; nothing but whitespace may follow).
int json_matcher_complete(const JsonMatcher *m);
