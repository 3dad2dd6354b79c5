#!/usr/bin/env node
/** `xenstore-write`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-write", process.argv.slice(2));
