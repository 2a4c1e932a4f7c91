// Python-free Verilator harness of pow2det_accel: an AXI4 memory slave on m_axi_gmem_* over a
// memory-mapped file (the DDR image, shared with the Python side), an AXI-Lite master on
// s_axi_control_*, and a line protocol on stdin/stdout for the host driver (sim/fast_rtl.py):
//
//   w <offset> <value>   AXI-Lite write                     -> "ok"
//   r <offset>           AXI-Lite read                      -> "<value>"
//   run <max_cycles>     clock until irq is high or the limit -> "irq <cycles>" | "timeout <cycles>"
//   cycles               cycles since reset                 -> "<cycles>"
//   q                    quit
//
// Numbers are decimal. The memory model (arguments 3 and 4): reads are answered in order, the
// first beat of a burst LATENCY cycles after its address was accepted, then up to one beat per
// cycle (up to MAX_READS addresses outstanding); writes take up to one beat per cycle and answer
// B the cycle after the last beat. SHARED caps reads + writes together, in beats per cycle (a
// DDR shared by both directions): a token bucket gains SHARED each cycle (holding at most 2),
// every beat spends one, and when both directions wait they take turns. 0 = no shared cap.
// Signals are sampled before each rising edge and driven after it, as a synchronous slave
// does, so every valid/ready handshake happens on the edge it would in RTL.
//
// Built by sim/fast_rtl.py with -DDATA_BITS=<8 x lanes>.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <string>

#include "Vpow2det_accel.h"
#include "verilated.h"

#ifndef DATA_BITS
#error "DATA_BITS (the AXI data width) must be defined"
#endif
#ifndef MAX_READS
#define MAX_READS 8
#endif

static constexpr int BEAT = DATA_BITS / 8;  // bytes per beat

struct Burst {
    uint64_t addr;
    unsigned beats;  // remaining
    unsigned id;
    uint64_t ready_at;  // first cycle a beat may go out
};

class Harness {
  public:
    Harness(const char* mem_path, uint64_t mem_size, unsigned latency, double shared)
        : size_(mem_size), latency_(latency), shared_(shared) {
        int fd = open(mem_path, O_RDWR);
        if (fd < 0) die("cannot open the memory file");
        mem_ = static_cast<uint8_t*>(mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        close(fd);
        if (mem_ == MAP_FAILED) die("cannot map the memory file");
        ctx_ = std::make_unique<VerilatedContext>();
        top_ = std::make_unique<Vpow2det_accel>(ctx_.get());
        top_->aresetn = 0;
        for (int i = 0; i < 8; ++i) tick();
        top_->aresetn = 1;
        tick();
        cycles_ = 0;
    }

    ~Harness() {
        top_->final();
        munmap(mem_, size_);
    }

    [[noreturn]] static void die(const char* why) {
        std::fprintf(stderr, "fast-rtl harness: %s\n", why);
        std::exit(2);
    }

    void write_reg(uint32_t off, uint32_t value) {
        bool aw = false, w = false;
        lite_aw_ = true; lite_awaddr_ = off; lite_w_ = true; lite_wdata_ = value;
        lite_bready_ = true;
        for (uint64_t n = 0; n < LITE_TIMEOUT; ++n) {
            bool b = false;
            cycle(&aw, &w, &b, nullptr);
            if (aw) lite_aw_ = false;
            if (w) lite_w_ = false;
            if (b) { lite_bready_ = false; return; }
        }
        die("AXI-Lite write got no response");
    }

    uint32_t read_reg(uint32_t off) {
        bool ar = false;
        lite_ar_ = true; lite_araddr_ = off; lite_rready_ = true;
        for (uint64_t n = 0; n < LITE_TIMEOUT; ++n) {
            uint32_t data = 0;
            bool r = false;
            lite_rdata_ = &data; lite_rgot_ = &r;
            cycle(nullptr, nullptr, nullptr, &ar);
            if (ar) lite_ar_ = false;
            if (r) { lite_rready_ = false; lite_rdata_ = nullptr; return data; }
        }
        die("AXI-Lite read got no response");
    }

    // Clock until irq or the limit; returns whether irq rose.
    bool run(uint64_t max_cycles) {
        for (uint64_t n = 0; n < max_cycles; ++n) {
            if (top_->irq) return true;
            cycle(nullptr, nullptr, nullptr, nullptr);
        }
        return top_->irq;
    }

    uint64_t cycles() const { return cycles_; }

  private:
    static constexpr uint64_t LITE_TIMEOUT = 100000;

    void tick() {
        top_->aclk = 0;
        top_->eval();
        top_->aclk = 1;
        top_->eval();
    }

    uint8_t* at(uint64_t addr, unsigned n) {
        if (addr + n > size_) die("AXI access outside the memory image");
        return mem_ + addr;
    }

    // One clock cycle: settle, sample every handshake, rising edge, update, drive.
    void cycle(bool* lite_aw, bool* lite_w, bool* lite_b, bool* lite_ar) {
        auto* t = top_.get();
        // -- drive the AXI-Lite master's outputs and the memory's ready/valid, then settle
        t->s_axi_control_awvalid = lite_aw_;
        t->s_axi_control_awaddr = lite_awaddr_;
        t->s_axi_control_wvalid = lite_w_;
        t->s_axi_control_wdata = lite_wdata_;
        t->s_axi_control_wstrb = 0xF;
        t->s_axi_control_bready = lite_bready_;
        t->s_axi_control_arvalid = lite_ar_;
        t->s_axi_control_araddr = lite_araddr_;
        t->s_axi_control_rready = lite_rready_;
        // The shared budget: with one beat's worth, one direction goes (alternating when both
        // want it); with two, both.
        bool r_want = !reads_.empty() && reads_.front().ready_at <= cycles_;
        bool w_may = aw_open_;
        if (shared_ > 0) {
            if (tokens_ < 1.0) {
                r_want = w_may = false;
            } else if (tokens_ < 2.0 && r_want && w_may) {
                (turn_ ? w_may : r_want) = false;
            }
        }
        bool r_out = r_want;
        if (r_out) set_rdata(at(reads_.front().addr, BEAT));
        t->m_axi_gmem_rvalid = r_out;
        t->m_axi_gmem_rlast = r_out && reads_.front().beats == 1;
        t->m_axi_gmem_rid = r_out ? reads_.front().id : 0;
        t->m_axi_gmem_rresp = 0;
        t->m_axi_gmem_arready = reads_.size() < MAX_READS;
        t->m_axi_gmem_awready = !aw_open_;
        t->m_axi_gmem_wready = w_may;
        t->m_axi_gmem_bvalid = !bresp_.empty();
        t->m_axi_gmem_bid = bresp_.empty() ? 0 : bresp_.front();
        t->m_axi_gmem_bresp = 0;
        t->aclk = 0;
        t->eval();
        // -- handshakes of this rising edge
        bool ar = t->m_axi_gmem_arvalid && t->m_axi_gmem_arready;
        bool r = r_out && t->m_axi_gmem_rready;
        bool aw = t->m_axi_gmem_awvalid && t->m_axi_gmem_awready;
        bool w = t->m_axi_gmem_wvalid && t->m_axi_gmem_wready;
        bool b = t->m_axi_gmem_bvalid && t->m_axi_gmem_bready;
        Burst rq{t->m_axi_gmem_araddr, static_cast<unsigned>(t->m_axi_gmem_arlen) + 1u,
                 static_cast<unsigned>(t->m_axi_gmem_arid), cycles_ + 1 + latency_};
        uint64_t awaddr = t->m_axi_gmem_awaddr;
        unsigned awid = t->m_axi_gmem_awid;
        bool wlast = t->m_axi_gmem_wlast;
        uint64_t wstrb = t->m_axi_gmem_wstrb;
        if (w) get_wdata(wbuf_);
        bool l_aw = t->s_axi_control_awvalid && t->s_axi_control_awready;
        bool l_w = t->s_axi_control_wvalid && t->s_axi_control_wready;
        bool l_b = t->s_axi_control_bvalid && t->s_axi_control_bready;
        bool l_ar = t->s_axi_control_arvalid && t->s_axi_control_arready;
        bool l_r = t->s_axi_control_rvalid && t->s_axi_control_rready;
        uint32_t l_rdata = t->s_axi_control_rdata;
        t->aclk = 1;
        t->eval();
        ++cycles_;
        // -- the memory's state after the edge
        if (shared_ > 0) {
            tokens_ -= (r ? 1.0 : 0.0) + (w ? 1.0 : 0.0);
            if (r != w) turn_ = w;  // the direction that waited goes first next time
            tokens_ = std::min(tokens_ + shared_, 2.0);
        }
        if (r) {
            Burst& f = reads_.front();
            f.addr += BEAT;
            if (--f.beats == 0) reads_.pop_front();
        }
        if (ar) reads_.push_back(rq);
        if (b) bresp_.pop_front();
        if (aw) { aw_open_ = true; waddr_ = awaddr; wid_ = awid; }
        if (w) {
            uint8_t* p = at(waddr_, BEAT);
            for (int i = 0; i < BEAT; ++i)
                if ((wstrb >> i) & 1) p[i] = wbuf_[i];
            waddr_ += BEAT;
            if (wlast) { aw_open_ = false; bresp_.push_back(wid_); }
        }
        if (lite_aw) *lite_aw = l_aw;
        if (lite_w) *lite_w = l_w;
        if (lite_b) *lite_b = l_b;
        if (lite_ar) *lite_ar = l_ar;
        if (l_r && lite_rgot_) { *lite_rgot_ = true; if (lite_rdata_) *lite_rdata_ = l_rdata; }
    }

    void set_rdata(const uint8_t* p) {
#if DATA_BITS <= 64
        uint64_t v = 0;
        std::memcpy(&v, p, BEAT);
        top_->m_axi_gmem_rdata = v;
#else
        for (int i = 0; i < DATA_BITS / 32; ++i) {
            uint32_t word;
            std::memcpy(&word, p + 4 * i, 4);
            top_->m_axi_gmem_rdata[i] = word;
        }
#endif
    }

    void get_wdata(uint8_t* p) {
#if DATA_BITS <= 64
        uint64_t v = top_->m_axi_gmem_wdata;
        std::memcpy(p, &v, BEAT);
#else
        for (int i = 0; i < DATA_BITS / 32; ++i) {
            uint32_t word = top_->m_axi_gmem_wdata[i];
            std::memcpy(p + 4 * i, &word, 4);
        }
#endif
    }

    uint64_t size_;
    unsigned latency_;
    double shared_;
    double tokens_ = 2.0;
    bool turn_ = false;  // true: reads go first when both wait on a one-beat budget
    uint8_t* mem_ = nullptr;
    std::unique_ptr<VerilatedContext> ctx_;
    std::unique_ptr<Vpow2det_accel> top_;
    uint64_t cycles_ = 0;
    std::deque<Burst> reads_;
    std::deque<unsigned> bresp_;
    bool aw_open_ = false;
    uint64_t waddr_ = 0;
    unsigned wid_ = 0;
    uint8_t wbuf_[BEAT];
    // AXI-Lite master state
    bool lite_aw_ = false, lite_w_ = false, lite_bready_ = false, lite_ar_ = false,
         lite_rready_ = false;
    uint32_t lite_awaddr_ = 0, lite_wdata_ = 0, lite_araddr_ = 0;
    uint32_t* lite_rdata_ = nullptr;
    bool* lite_rgot_ = nullptr;
};

int main(int argc, char** argv) {
    if (argc != 5) Harness::die("usage: harness MEMORY_FILE SIZE LATENCY SHARED_BEATS_PER_CYCLE");
    Harness h(argv[1], std::strtoull(argv[2], nullptr, 10),
              static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10)), std::strtod(argv[4], nullptr));
    std::ios::sync_with_stdio(false);
    std::string cmd;
    std::cout << "ready" << std::endl;
    while (std::cin >> cmd) {
        if (cmd == "w") {
            uint32_t off, v;
            std::cin >> off >> v;
            h.write_reg(off, v);
            std::cout << "ok" << std::endl;
        } else if (cmd == "r") {
            uint32_t off;
            std::cin >> off;
            std::cout << h.read_reg(off) << std::endl;
        } else if (cmd == "run") {
            uint64_t n;
            std::cin >> n;
            bool irq = h.run(n);
            std::cout << (irq ? "irq " : "timeout ") << h.cycles() << std::endl;
        } else if (cmd == "cycles") {
            std::cout << h.cycles() << std::endl;
        } else if (cmd == "q") {
            break;
        } else {
            Harness::die("unknown command");
        }
    }
    return 0;
}
