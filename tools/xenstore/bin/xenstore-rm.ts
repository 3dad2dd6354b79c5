#!/usr/bin/env node
/** `xenstore-rm`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-rm", process.argv.slice(2));
