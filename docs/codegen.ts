// codegen.ts: typed documents for the app's queries, from EventGraph's SDL.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["src/**/*.{ts,tsx,js,jsx}"],
  ignoreNoDocuments: true,
  generates: {
    "src/gql/": {
      preset: "client",
      config: {
        scalars: {
          Decimal: "string", // exact money, e.g. "19.99": never parse it into a float
          Position: "number", // a JSON number, exact up to 2^53
          DateTime: "string", // ISO-8601 with time zone
          JSON: "unknown",
        },
      },
    },
  },
};

export default config;
