#!/usr/bin/env node
/** `xenstore-watch`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-watch", process.argv.slice(2));
